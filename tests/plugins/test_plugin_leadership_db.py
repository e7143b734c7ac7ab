"""Leadership's database operations: take, renew, expire, release; one leader at a time."""

from __future__ import annotations

import anyio
import pytest

from chancy.plugins.leadership import current_leader, lease_remaining, release, try_acquire

pytestmark = pytest.mark.anyio


async def expire_lease(app) -> None:
    async with app.db.connection() as conn:
        await conn.execute(app.tables.q("UPDATE {leader} SET expires_at = now() - interval '1s'"))


async def test_take_renew_expire_release(make_app) -> None:
    app = await make_app()
    assert await current_leader(app) is None
    assert await lease_remaining(app) is None
    assert await try_acquire(app, "a", "1", 30)
    remaining = await lease_remaining(app)
    assert remaining is not None
    assert 29 < remaining <= 30
    first = await current_leader(app)
    assert first is not None
    assert first["worker_id"] == "a"
    assert not await try_acquire(app, "b", "1", 30)
    # Renewal keeps the election time and pushes the expiry forward.
    assert await try_acquire(app, "a", "1", 60)
    renewed = await current_leader(app)
    assert renewed is not None
    assert renewed["elected_at"] == first["elected_at"]
    assert renewed["expires_at"] > first["expires_at"]
    # A restarted worker reusing the id is another incarnation: it waits for the lease to end.
    assert not await try_acquire(app, "a", "2", 30)
    await expire_lease(app)
    assert await current_leader(app) is None
    assert await try_acquire(app, "b", "1", 30)
    assert not await try_acquire(app, "a", "1", 30)
    assert not await release(app, "a", "1")
    assert await release(app, "b", "1")
    assert await current_leader(app) is None
    assert await try_acquire(app, "a", "2", 30)


async def test_exactly_one_of_many_concurrent_candidates_wins(make_app) -> None:
    app = await make_app(max_connection_pool_size=10)
    for _round in range(3):
        winners: list[str] = []

        async def candidate(name: str, into: list[str]) -> None:
            if await try_acquire(app, name, "x", 30):
                into.append(name)

        async with anyio.create_task_group() as tg:
            for i in range(8):
                tg.start_soon(candidate, f"w{i}", winners)
        assert len(winners) == 1
        leader = await current_leader(app)
        assert leader is not None
        assert leader["worker_id"] == winners[0]
        await expire_lease(app)
