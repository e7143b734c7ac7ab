"""A job module that takes long to import (a stop must interrupt the import too)."""

import time

time.sleep(3)


def never_reached() -> None:
    raise AssertionError("the import should have been interrupted")
