"""The asyncio-only surface: `pool`, `declare_ex`, `push_many_ex`, `notify` on async cursors."""

import json

import jobs
import pytest

from chancy import Chancy, Job, Queue

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_push_many_ex_joins_the_callers_transaction(chancy: Chancy) -> None:
    async with chancy.pool.connection() as conn:
        async with conn.transaction(), conn.cursor() as cur:
            await chancy.declare_ex(cur, Queue("default"))
            refs = await chancy.push_many_ex(cur, [Job.from_func(jobs.noop) for _ in range(3)])
        assert len(refs) == 3
        with pytest.raises(RuntimeError):
            async with conn.transaction(), conn.cursor() as cur:
                await chancy.push_many_ex(cur, [Job.from_func(jobs.noop)])
                raise RuntimeError("the caller's work failed")
        cur = await conn.execute(chancy.tables.q("SELECT count(*) FROM {jobs}"))
        assert await cur.fetchone() == (3,)


async def test_notify_on_async_cursor(chancy: Chancy) -> None:
    async with chancy.db.dedicated() as listener:
        await listener.execute(f'LISTEN "{chancy.tables.channel}"')
        async with chancy.pool.connection() as conn, conn.cursor() as cur:
            await chancy.notify(cur, "custom", {"x": 1})
        got = await listener.notifies(timeout=5)
    assert [json.loads(p) for _, p in got] == [{"t": "custom", "x": 1}]


async def test_pool_needs_an_open_app(dsn: str) -> None:
    app = Chancy(dsn, plugins=[])
    with pytest.raises(RuntimeError, match="not open"):
        app.pool  # noqa: B018
