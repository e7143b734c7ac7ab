"""The app and the job of tests/test_hosts.py, for supervisors run in network namespaces.

Environment: CHANCY_HOSTS_DSN (the test's own PostgreSQL, reached over this host's veth),
CHANCY_HOSTS_PREFIX (the table prefix), CHANCY_HOSTS_HOST (this host's name, e.g. ``h2``).
Not imported by the test process itself: the test names the job by its path.
"""

import os

import anyio
from psycopg import sql
from psycopg_pool import AsyncConnectionPool

from chancy import Chancy, QueuedJob
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import Recovery

DSN = os.environ["CHANCY_HOSTS_DSN"]
PREFIX = os.environ["CHANCY_HOSTS_PREFIX"]
HOST = os.environ["CHANCY_HOSTS_HOST"]
LEDGER = f"{PREFIX}ledger"

chancy = Chancy(
    DSN,
    prefix=PREFIX,
    plugins=[
        Leadership(poll_interval=1, timeout=5),
        Recovery(poll_interval=1, grace=1),
    ],
)

_INSERT = sql.SQL("INSERT INTO {} (job_id, attempt, host) VALUES (%s, %s, %s)").format(
    sql.Identifier(LEDGER)
)
_pool: AsyncConnectionPool | None = None
_opening: anyio.Lock | None = None


async def _ledger_pool() -> AsyncConnectionPool:
    """One small pool per supervisor process, opened on first use (in the worker's loop)."""
    global _pool, _opening
    if _pool is None:
        _opening = _opening or anyio.Lock()
        async with _opening:
            if _pool is None:
                # A long `timeout`: while this host's link is down the job waits for it to
                # come back rather than failing (its attempt is fenced either way).
                pool = AsyncConnectionPool(DSN, min_size=2, max_size=8, open=False, timeout=120)
                await pool.open(wait=True, timeout=30)
                _pool = pool
    return _pool


async def work(n: int, sleep: float = 0.0, *, job: QueuedJob) -> dict[str, object]:
    """Optionally sleep, then record this run in the ledger: one row per (job, attempt).

    The primary key (job_id, attempt) makes the database refuse a second run of the same
    attempt; the returned result names the attempt, so the test can tell which run's
    completion was the one stored.
    """
    if sleep:
        await anyio.sleep(sleep)
    pool = await _ledger_pool()
    async with pool.connection() as conn:
        await conn.execute(_INSERT, (job.id, job.attempts, HOST))
    return {"n": n, "attempt": job.attempts, "host": HOST}
