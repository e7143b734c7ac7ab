"""Leadership with real workers: one leader, flags and hub events, handover after SIGKILL."""

from __future__ import annotations

import time

import anyio
import pytest
from plugin_helpers import eventually, leader_id

from chancy import Chancy
from chancy.plugins.leadership import Leadership, current_leader
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

FAST = {"heartbeat_poll_interval": 0.5, "heartbeat_timeout": 3}


async def test_one_leader_flags_and_events_and_clean_handover(dsn: str, prefix: str) -> None:
    apps = [
        Chancy(dsn, prefix=prefix, plugins=[Leadership(poll_interval=0.2, timeout=2)])
        for _ in range(2)
    ]
    events: list[tuple[str, str]] = []
    async with apps[0], apps[1]:
        await apps[0].migrate()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                workers = [Worker(app, worker_id=f"w{i}", **FAST) for i, app in enumerate(apps)]
                for worker in workers:
                    for kind in ("leadership.gained", "leadership.lost"):
                        worker.hub.on(
                            kind, lambda e, w=worker: events.append((e.kind, w.worker_id))
                        )
                    await tg.start(worker.run)

                async def one_leader() -> Worker | None:
                    leaders = [w for w in workers if w.is_leader.is_set()]
                    return leaders[0] if len(leaders) == 1 else None

                first = await eventually(one_leader, timeout=5)
                assert await leader_id(apps[0]) == first.worker_id
                other = workers[1 - workers.index(first)]
                # It stays the only leader across several renewals.
                await anyio.sleep(0.8)
                assert first.is_leader.is_set()
                assert not other.is_leader.is_set()
                assert events == [("leadership.gained", first.worker_id)]

                # Steal the lease behind the leader's back: it notices at its next renewal.
                async with apps[0].db.connection() as conn:
                    await conn.execute(
                        apps[0].tables.q(
                            "UPDATE {leader} SET worker_id = 'intruder',"
                            " expires_at = now() + interval '1 second'"
                        )
                    )
                await eventually(lambda: _false(first), timeout=3)
                assert ("leadership.lost", first.worker_id) in events
                # After the intruder's lease ends, one of the workers leads again.
                second = await eventually(one_leader, timeout=5)

                # A leader that stops cleanly releases the lease: the other takes over at once
                # (well before the 2 s lease could have expired).
                remaining = workers[1 - workers.index(second)]
                stopped = time.monotonic()
                await second.stop()
                await eventually(lambda: _true(remaining), timeout=1.5)
                assert time.monotonic() - stopped < 1.5
                assert await leader_id(apps[0]) == remaining.worker_id
                tg.cancel_scope.cancel()


async def _false(worker: Worker) -> bool:
    return not worker.is_leader.is_set()


async def _true(worker: Worker) -> bool:
    return worker.is_leader.is_set()


async def test_leader_sigkilled_is_replaced_within_the_timeout(procs, make_app) -> None:
    app = await make_app()
    # A poll interval close to the timeout: the survivor must not wait for its next poll.
    plugins = {"leadership": {"poll_interval": 1.5, "timeout": 2}}
    for name in ("a", "b"):
        procs.start(name, plugins, **FAST)
    first = await eventually(lambda: leader_id(app), timeout=20)
    # Only one leader, and it keeps the lease.
    await anyio.sleep(1)
    assert await leader_id(app) == first
    procs.kill(first)
    killed = time.monotonic()
    dead_lease = await current_leader(app)
    assert dead_lease is not None
    assert dead_lease["worker_id"] == first
    survivor = "b" if first == "a" else "a"

    async def new_leader() -> dict | None:
        lease = await current_leader(app)
        return lease if lease is not None and lease["worker_id"] != first else None

    lease = await eventually(new_leader, timeout=10)
    assert lease["worker_id"] == survivor
    took = time.monotonic() - killed
    assert took < 2 + 1.0, f"handover took {took:.1f} s"
    # Never two leases at once, and no waiting for a poll once the dead one expired
    # (both times are the database's clock).
    gap = (lease["elected_at"] - dead_lease["expires_at"]).total_seconds()
    assert 0 <= gap < 0.75, gap
    assert procs.alive(survivor)


async def test_default_plugins_make_a_lone_worker_the_leader(dsn: str, prefix: str) -> None:
    app = Chancy(dsn, prefix=prefix)  # plugins=None: leadership, recovery, pruning
    async with app:
        await app.migrate()
        assert await app.is_up_to_date()
        with anyio.fail_after(20):
            async with Worker(app, worker_id="solo", **FAST) as worker:
                await eventually(lambda: _true(worker), timeout=5)
                assert await leader_id(app) == "solo"
        assert not worker.is_leader.is_set()
        assert await leader_id(app) is None  # released on a clean stop


async def test_a_leader_whose_renewal_hangs_gives_up_when_its_lease_ends(
    dsn: str, prefix: str
) -> None:
    app = Chancy(dsn, prefix=prefix, plugins=[Leadership(poll_interval=0.3, timeout=1.5)])
    lost = anyio.Event()
    async with app:
        await app.migrate()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                worker = Worker(app, worker_id="stuck", **FAST)
                worker.hub.on("leadership.lost", lambda e: lost.set())
                await tg.start(worker.run)
                await eventually(lambda: _true(worker), timeout=5)
                # Hold the lease row locked: the leader's next renewal blocks on it.
                async with app.db.connection() as conn, conn.transaction():
                    await conn.execute(app.tables.q("SELECT * FROM {leader} FOR UPDATE"))
                    locked = time.monotonic()
                    await lost.wait()
                    assert time.monotonic() - locked < 1.5 + 0.5
                    assert not worker.is_leader.is_set()
                # Once the database answers again, it leads again.
                await eventually(lambda: _true(worker), timeout=5)
                tg.cancel_scope.cancel()
