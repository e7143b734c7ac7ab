"""``python -m chancy.supervisor._watchdog``: outlives a killed supervisor just long enough.

When the supervisor is SIGKILLed, the kernel kills its children (``PR_SET_PDEATHSIG``),
but processes those children started would be reparented to init and live on. The pool
therefore starts one watchdog: the supervisor writes ``+PGID`` / ``-PGID`` lines on its
stdin as children (each the leader of its own process group) come and go. At end-of-file,
which is also what the watchdog sees when the supervisor dies, it SIGKILLs every group
still registered, then exits. Processes a job moves out of its group (``setsid``) are out
of its reach.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys


def main() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin.buffer:
        text = line.strip()
        try:
            pgid = int(text[1:])
        except ValueError:
            continue
        if text.startswith(b"+") and pgid > 1:
            groups.add(pgid)
        elif text.startswith(b"-"):
            groups.discard(pgid)
    for pgid in groups:
        with contextlib.suppress(OSError):
            os.killpg(pgid, signal.SIGKILL)


if __name__ == "__main__":
    main()
