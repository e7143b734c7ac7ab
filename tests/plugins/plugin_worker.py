"""Run one Worker with the plugins described by a JSON config, until SIGTERM (or SIGKILL).

    python plugin_worker.py '{"dsn": ..., "prefix": ..., "worker_id": ..., "backend": "trio",
                              "plugins": {"leadership": {...}, "recovery": {...}}}'

Prints ``ready <pid>`` on stdout once the worker runs. The plugin tests start these in
subprocesses so they can kill a worker the hard way.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent))

from chancy import Chancy
from chancy.plugin import Plugin
from chancy.plugins import Leadership, Pruner, Recovery, Retry
from chancy.plugins.cron import Cron
from chancy.plugins.workflow import WorkflowPlugin
from chancy.worker import Worker

KINDS: dict[str, type[Plugin]] = {
    "leadership": Leadership,
    "recovery": Recovery,
    "pruner": Pruner,
    "retry": Retry,
    "cron": Cron,
    "workflow": WorkflowPlugin,
}


async def main(config: dict) -> None:
    plugins = [KINDS[name](**options) for name, options in config["plugins"].items()]
    app = Chancy(config["dsn"], prefix=config["prefix"], plugins=plugins, poll_reconnect_timeout=10)
    async with app:
        worker = Worker(app, worker_id=config["worker_id"], **config.get("worker", {}))
        async with worker:
            print(f"ready {os.getpid()}", flush=True)
            await worker.wait_for_shutdown()


if __name__ == "__main__":
    cfg = json.loads(sys.argv[1])
    anyio.run(main, cfg, backend=cfg.get("backend", "asyncio"))
