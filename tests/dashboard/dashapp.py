"""The app of the dashboard tests' real processes (a dashboard and a supervisor): DSN and
prefix from the environment, the default plugins plus the metric history and cron."""

import os

from chancy import Chancy
from chancy.plugins import default_plugins
from chancy.plugins.cron import Cron
from chancy.plugins.metrics import Metrics


def make() -> Chancy:
    return Chancy(
        os.environ["CHANCY_DASH_DSN"],
        prefix=os.environ["CHANCY_DASH_PREFIX"],
        plugins=[*default_plugins(), Metrics(), Cron()],
        poll_reconnect_timeout=10,
    )
