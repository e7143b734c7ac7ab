"""A Worker in its own process, for the benchmarks that should not share an event loop with it.

    python -m benchmarks._serve DSN PREFIX NOTIFICATIONS(0|1)

Runs until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import signal
import sys

import anyio

from chancy import Chancy


async def main(dsn: str, prefix: str, notifications: bool) -> None:
    from chancy.worker import Worker

    logging.getLogger("chancy").setLevel(logging.WARNING)
    logging.getLogger("chancy").addHandler(logging.StreamHandler())
    app = Chancy(dsn, prefix=prefix, plugins=[], notifications=notifications)
    async with app, anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        async with Worker(app, register_signal_handlers=False, shutdown_timeout=5):
            await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3] == "1")
