"""An app for CLI tests: DSN and prefix from the environment."""

import os

from chancy import Chancy


def make() -> Chancy:
    return Chancy(os.environ["CHANCY_CLI_DSN"], prefix=os.environ["CHANCY_CLI_PREFIX"], plugins=[])


not_an_app = 42


def send_report(user_id: int) -> None:
    """A job function, not an app factory: --app naming it must not call it."""
    raise AssertionError("called")


def makes_nothing() -> None:
    return None
