"""The embedded default: a real PostgreSQL server from the `pgserver` wheel, data in a folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

DEFAULT_DATA_DIR = ".chancy-pgdata"


def embedded_dsn(
    data_dir: str | os.PathLike[str] | None = None, *, keep_running: bool = True
) -> str:
    """Start (or reuse) an embedded PostgreSQL server and return its DSN.

    Data lives in `data_dir` (default `./.chancy-pgdata`, or `CHANCY_DATA_DIR`). With
    `keep_running`, the server outlives this process so that workers and pushers share it.
    Needs the `embedded` extra: `pip install 'chancy-queue[embedded]'`.
    """
    try:
        import pgserver
    except ImportError:
        raise RuntimeError(
            "no DSN given (CHANCY_DSN is unset) and the embedded server is not installed: "
            "pip install 'chancy-queue[embedded]', or set CHANCY_DSN=postgresql://..."
        ) from None
    path = Path(data_dir or os.environ.get("CHANCY_DATA_DIR") or DEFAULT_DATA_DIR).absolute()
    path.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(path, cleanup_mode=None if keep_running else "stop")
    logging.getLogger("chancy").info("using the embedded PostgreSQL server with data in %s", path)
    return server.get_uri()


def default_dsn() -> str:
    """`CHANCY_DSN` when set, else the embedded server's DSN."""
    return os.environ.get("CHANCY_DSN") or embedded_dsn()
