"""An app with the workflow plugin for the CLI tests: DSN and prefix from the environment."""

import os

from chancy import Chancy
from chancy.plugins.workflow import WorkflowPlugin


def make() -> Chancy:
    return Chancy(
        os.environ["CHANCY_CLI_DSN"],
        prefix=os.environ["CHANCY_CLI_PREFIX"],
        plugins=[WorkflowPlugin()],
    )
