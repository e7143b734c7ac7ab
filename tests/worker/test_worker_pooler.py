"""Behind a pooler: a worker through PgBouncer in transaction mode, and connection naming.

PgBouncer comes from Debian's `pgbouncer` package (`.ci/run` installs it); the test starts its
own instance on a free port in front of the test server and stops it afterwards.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psycopg
import pytest
import wjobs
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from support import FAST, eventually, fetch

from chancy import Chancy, Job, Queue, QueuedJob
from chancy.plugins.leadership import Leadership
from chancy.plugins.recovery import rescue_jobs
from chancy.worker import Worker

pytestmark = pytest.mark.anyio

PGBOUNCER = shutil.which("pgbouncer") or next(
    (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.path.exists(p)), None
)
# Behind a transaction-mode pooler: no server-side prepared statements (PgBouncer < 1.21).
THROUGH_POOLER = {"prepare_threshold": None}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pooled_dsn(dsn: str) -> Iterator[str]:
    """`dsn`, but through a PgBouncer of our own in transaction mode."""
    if PGBOUNCER is None:
        pytest.skip("PgBouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    server = conninfo_to_dict(dsn)
    port = _free_port()
    folder = Path(tempfile.mkdtemp(prefix="chancy-pgbouncer-"))
    user = server.get("user") or "postgres"
    target = " ".join(
        f"{key}={server[key]}" for key in ("host", "port", "dbname", "user") if server.get(key)
    )
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"chancy_pooled = {target}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {folder / 'users.txt'}\n"
        "pool_mode = transaction\n"
        "default_pool_size = 20\n"
        "max_client_conn = 200\n"
    )
    os.chmod(folder, 0o755)
    for path in folder.iterdir():
        os.chmod(path, 0o644)
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        command[1:1] = ["-u", "postgres"]
    output = (folder / "output.log").open("wb")
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
    pooled = make_conninfo(host="127.0.0.1", port=port, dbname="chancy_pooled", user=user)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                psycopg.connect(pooled, connect_timeout=2, **THROUGH_POOLER).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log = (folder / "output.log").read_text(errors="replace")[-2000:]
                    pytest.fail(f"PgBouncer did not start:\n{log}")
                time.sleep(0.1)
        yield pooled
    finally:
        process.terminate()
        process.wait(10)
        output.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
async def pooled_app(pooled_dsn: str, dsn: str, prefix: str, request):
    """An app through the pooler; `request.param` picks LISTEN on the direct DSN or no
    notifications at all."""
    listen = request.param == "listen-direct"
    app = Chancy(
        pooled_dsn,
        prefix=prefix,
        plugins=[Leadership(poll_interval=1, timeout=5)],
        notifications=listen,
        listen_dsn=dsn if listen else None,
        connection_kwargs=THROUGH_POOLER,
    )
    async with app:
        await app.migrate()
        yield app
        await app.migrate(to_version=0)


MODES = pytest.mark.parametrize("pooled_app", ["listen-direct", "no-notifications"], indirect=True)


@MODES
async def test_jobs_leadership_and_rescue_through_pgbouncer(pooled_app: Chancy) -> None:
    app = pooled_app
    await app.declare(Queue("q", executor=Chancy.Executor.Async, concurrency=5))
    jobs = [Job(func="wjobs.async_record", queue="q", kwargs={"label": "p"}) for _ in range(40)]
    refs = [ref async for batch in app.push_many(jobs) for ref in batch]
    async with Worker(app, **FAST) as worker:
        done = await app.wait_for_jobs(refs, timeout=60)
        assert [job.state for job in done] == [QueuedJob.State.SUCCEEDED] * 40
        await eventually(worker.is_leader.is_set, timeout=20)
    assert len(wjobs.RUNS["p"]) == 40
    # A job left running by a worker that is gone is rescued through the pooler too.
    ref = await app.push(Job(func="wjobs.async_noop", queue="q", max_attempts=2))
    async with app.db.connection() as conn:
        await conn.execute(
            app.tables.q(
                "UPDATE {jobs} SET state = 'running', taken_by = 'gone:1', attempts = 1,"
                " started_at = now() - interval '1 hour' WHERE id = %s"
            ),
            (ref.identifier,),
        )
    assert [state for _, _, state in await rescue_jobs(app, grace=0)] == ["retrying"]


@pytest.mark.parametrize("pooled_app", ["listen-direct"], indirect=True)
async def test_notifications_arrive_on_the_direct_listen_dsn(pooled_app: Chancy) -> None:
    app = pooled_app
    # Polling once a minute: only a notification can start the job within the timeout.
    await app.declare(Queue("slow", executor=Chancy.Executor.Async, polling_interval=60))
    async with Worker(app, **FAST) as worker:
        await eventually(lambda: worker.listener is not None and worker.listener.connections)
        await anyio.sleep(0.5)  # the fetcher has made its first (empty) claim
        ref = await app.push(Job(func="wjobs.async_noop", queue="slow"))
        job = await app.wait_for_job(ref, timeout=20)
    assert job is not None
    assert job.state == QueuedJob.State.SUCCEEDED


async def test_every_connection_is_named_after_its_worker(chancy: Chancy, dsn: str) -> None:
    worker = Worker(Chancy(dsn, prefix=chancy.prefix, plugins=[]), worker_id="named-w1", **FAST)
    async with worker.chancy, worker:
        await eventually(lambda: worker.listener is not None and worker.listener.connections)
        names = await fetch(
            chancy,
            "SELECT application_name FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name LIKE 'chancy-named-w1%%'",
        )
    assert len(names) >= 2  # the pool's connection and the listener's
    assert {name for (name,) in names} == {"chancy-named-w1"}


def test_a_users_application_name_is_kept(dsn: str) -> None:
    app = Chancy(dsn, plugins=[], connection_kwargs={"application_name": "my-service"})
    Worker(app, worker_id="w2")
    with app, app.sync_pool.connection() as conn:
        assert conn.execute("SHOW application_name").fetchone() == ("my-service",)
