"""A Worker in its own process, for the benchmarks that should not share an event loop with it.

    python -m benchmarks._serve DSN PREFIX NOTIFICATIONS(0|1) [SEND_OUTGOING_INTERVAL]

Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys

import anyio

from chancy import Chancy


async def main(dsn: str, prefix: str, notifications: bool, outgoing: float | None) -> None:
    from chancy.worker import Worker

    logging.getLogger("chancy").setLevel(logging.WARNING)
    logging.getLogger("chancy").addHandler(logging.StreamHandler())
    app = Chancy(dsn, prefix=prefix, plugins=[], notifications=notifications)
    async with app:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            # Leaving the block normally stops the worker gracefully (`Worker.stop`).
            worker = Worker(app, register_signal_handlers=False, shutdown_timeout=5)
            if outgoing is not None:
                worker.send_outgoing_interval = outgoing
            async with worker:
                async for _ in signals:
                    break


if __name__ == "__main__":
    outgoing = float(sys.argv[4]) if len(sys.argv) > 4 else None
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3] == "1", outgoing)
