"""`chancy-supervisor`: not there yet (see issue 4)."""

import sys


def main() -> int:
    print("chancy-supervisor is not implemented yet", file=sys.stderr)
    return 2
