"""An app for CLI tests: DSN and prefix from the environment."""

import os

from chancy import Chancy


def make() -> Chancy:
    return Chancy(os.environ["CHANCY_CLI_DSN"], prefix=os.environ["CHANCY_CLI_PREFIX"], plugins=[])


not_an_app = 42
