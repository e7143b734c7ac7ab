"""The worker's side HTTP port (chancy.health, chancy._http), its metrics (chancy.metrics),
`chancy-supervisor --http/--check=live/--log-format json`: real workers, real PostgreSQL,
real sockets and child processes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import eventually

import chancy._http as _http
from chancy import Chancy, Job, Limit, Queue, QueuedJob
from chancy._logging import JsonFormatter
from chancy.worker import Worker

TESTS = Path(__file__).parent
SUPERVISOR_TESTS = TESTS / "supervisor"
if str(SUPERVISOR_TESTS) not in sys.path:  # supervisor_jobs, for process-executor children
    sys.path.insert(0, str(SUPERVISOR_TESTS))

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


def get(url: str, token: str | None = None, method: str = "GET") -> tuple[int, str, dict]:
    request = urllib.request.Request(url, method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


async def aget(url: str, token: str | None = None, method: str = "GET") -> tuple[int, str, dict]:
    return await anyio.to_thread.run_sync(get, url, token, method)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus text exposition."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(text: str, name: str, **labels: str) -> float:
    return samples(text).get((name, tuple(sorted(labels.items()))), 0.0)


# -- metrics of a real worker ------------------------------------------------------------------


@pytest.fixture
async def worker(chancy: Chancy) -> AsyncIterator[Worker]:
    await chancy.declare(
        Queue("fast", concurrency=4, executor=Chancy.Executor.Async, polling_interval=1)
    )
    await chancy.declare(
        Queue(
            "proc",
            concurrency=2,
            executor=Chancy.Executor.Process,
            executor_options={"stop_grace": 0.3},
            polling_interval=1,
        )
    )
    w = Worker(
        chancy,
        http="127.0.0.1:0",
        register_signal_handlers=False,
        shutdown_timeout=5,
        heartbeat_poll_interval=1,
        heartbeat_timeout=5,
    )
    async with w:
        yield w


async def test_metrics_count_every_outcome(chancy: Chancy, worker: Worker) -> None:
    url = worker.http.url
    status, body, headers = await aget(url + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    assert value(body, "chancy_is_leader") == 0

    def job(func: str, queue: str = "fast", **kwargs: object) -> Job:
        return Job(func=func, queue=queue, kwargs=kwargs)

    refs = [
        await chancy.push(job("wjobs.async_record", label="ok")),
        await chancy.push(job("wjobs.async_record", label="ok")),
        await chancy.push(job("wjobs.async_fail").with_max_attempts(1)),
        await chancy.push(job("wjobs.sync_fail", queue="proc").with_max_attempts(2)),
    ]
    for ref in refs:
        assert await chancy.wait_for_job(ref, interval=0.2, timeout=60) is not None
    # Cancelled: a running job, stopped through the hub.
    sleeper = await chancy.push(job("wjobs.async_sleep", label="s", seconds=60))

    async def running() -> bool:
        return bool(worker.running_jobs())

    await eventually(running, what="the sleeper running")
    status, body, _ = await aget(url + "/metrics")
    assert value(body, "chancy_worker_running_jobs", queue="fast") == 1
    assert value(body, "chancy_worker_running_jobs", queue="proc") == 0
    assert value(body, "chancy_worker_children_rss_bytes") > 1 * MiB  # the warm proc child
    await chancy.cancel_job(sleeper)
    cancelled = await chancy.wait_for_job(sleeper, interval=0.2, timeout=30)
    assert cancelled.state == QueuedJob.State.FAILED
    # Limits, in the process executor's children.
    memory = job("supervisor_jobs.allocate", queue="proc", total_mib=600).with_limits(
        [Limit(Limit.Type.MEMORY, 100 * MiB)]
    )
    timed = job("supervisor_jobs.catch_everything", queue="proc").with_limits(
        [Limit(Limit.Type.TIME, 1)]
    )
    for ref in [await chancy.push(memory), await chancy.push(timed)]:
        done = await chancy.wait_for_job(ref, interval=0.2, timeout=60)
        assert done.state == QueuedJob.State.FAILED

    async def settled() -> str | None:
        _, text, _ = await aget(url + "/metrics")
        finished = sum(
            v for (name, _), v in samples(text).items() if name == "chancy_jobs_finished_total"
        )
        return text if finished == 8 else None

    body = await eventually(settled, what="eight finished attempts counted")
    assert value(body, "chancy_jobs_started_total", queue="fast") == 4
    assert value(body, "chancy_jobs_started_total", queue="proc") == 4
    fin = "chancy_jobs_finished_total"
    assert value(body, fin, queue="fast", state="succeeded") == 2
    assert value(body, fin, queue="fast", state="failed") == 1
    assert value(body, fin, queue="fast", state="cancelled") == 1
    assert value(body, fin, queue="proc", state="retrying") == 1
    assert value(body, fin, queue="proc", state="failed") == 3
    kills = "chancy_limit_kills_total"
    assert value(body, kills, queue="proc", limit="memory") == 1
    assert value(body, kills, queue="proc", limit="time") == 1
    assert value(body, kills, queue="fast", limit="time") == 0
    # Both limit kills replaced their child; the failures did not.
    restarts = "chancy_child_restarts_total"
    assert value(body, restarts, queue="proc", reason="limit") == 2
    assert value(body, restarts, queue="proc", reason="died") == 0
    assert value(body, "chancy_job_duration_seconds_count", queue="fast") == 4
    assert value(body, "chancy_job_duration_seconds_count", queue="proc") == 4
    # The cancelled sleeper ran a while; the time-limited job at least its second.
    assert value(body, "chancy_job_duration_seconds_sum", queue="proc") >= 1
    assert value(body, "chancy_job_wait_seconds_count", queue="fast") == 4
    assert value(body, "chancy_batcher_backlog") >= 0
    assert value(body, "chancy_listener_connected") == 1
    assert value(body, "chancy_worker_running_jobs", queue="fast") == 0

    status, text, _ = await aget(url + "/healthz")
    health = json.loads(text)
    assert status == 200
    assert health["status"] == "ok"
    assert health["checks"]["actors"]["ok"]
    status, text, _ = await aget(url + "/readyz")
    ready = json.loads(text)
    assert status == 200, ready
    assert set(ready["checks"]) >= {"database", "schema", "heartbeat", "listener"}


async def test_metrics_without_the_extra_answer_501(
    chancy: Chancy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    async with Worker(chancy, http="127.0.0.1:0", register_signal_handlers=False) as w:
        status, body, _ = await aget(w.http.url + "/metrics")
        assert status == 501
        assert "pip install" in body
        assert "metrics" in body
        assert (await aget(w.http.url + "/healthz"))[0] == 200


# -- health while the database goes away -------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[Path]:
    """A folder for a throwaway embedded PostgreSQL of this test's own (the shared server keeps
    running). Outside pytest's tmp_path, which other pytest runs on the host may clean up."""
    from chancy.embedded import stop_embedded

    with tempfile.TemporaryDirectory(prefix="chancy-outage-") as top:
        folder = Path(top) / "pg"
        try:
            yield folder
        finally:
            stop_embedded(folder)


async def test_readyz_follows_a_database_outage_and_healthz_does_not(own_server: Path) -> None:
    from chancy.embedded import embedded_dsn, stop_embedded

    dsn = await anyio.to_thread.run_sync(lambda: embedded_dsn(own_server, keep_running=False))
    app = Chancy(dsn, prefix="outage_", plugins=[], poll_reconnect_timeout=5)
    async with app:
        await app.migrate()
        await app.declare(Queue("default", polling_interval=1))
        worker = Worker(
            app,
            http="127.0.0.1:0",
            register_signal_handlers=False,
            heartbeat_poll_interval=1,
            heartbeat_timeout=3,
            shutdown_timeout=2,
        )
        async with worker:
            url = worker.http.url
            status, body, _ = await aget(url + "/readyz")
            assert status == 200, body
            await anyio.to_thread.run_sync(stop_embedded, own_server)

            async def unready() -> dict | None:
                status, body, _ = await aget(url + "/readyz")
                return json.loads(body) if status == 503 else None

            down = await eventually(unready, what="/readyz 503")
            assert down["checks"]["database"]["ok"] is False
            assert down["checks"]["database"]["error"]
            status, body, _ = await aget(url + "/healthz")
            assert status == 200, body
            # Down long enough for the heartbeat to go stale too.
            await anyio.sleep(3.5)
            status, body, _ = await aget(url + "/readyz")
            checks = json.loads(body)["checks"]
            assert status == 503
            assert checks["heartbeat"]["ok"] is False
            assert checks["listener"]["ok"] is False
            assert (await aget(url + "/healthz"))[0] == 200
            metrics = (await aget(url + "/metrics"))[1]
            assert value(metrics, "chancy_db_errors_total", operation="listen") >= 1
            again = await anyio.to_thread.run_sync(embedded_dsn, own_server)
            assert again == dsn

            async def ready() -> bool:
                return (await aget(url + "/readyz"))[0] == 200

            await eventually(ready, timeout=60, what="/readyz 200 again")
            ref = await app.push(Job(func="wjobs.async_record", kwargs={"label": "after"}))
            done = await app.wait_for_job(ref, interval=0.2, timeout=30)
            assert done.state == QueuedJob.State.SUCCEEDED


# -- off loopback: the token -------------------------------------------------------------------


def _host_address() -> str | None:
    """A non-loopback IPv4 address of this host, if it has one."""
    candidates = []
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent
            candidates.append(probe.getsockname()[0])
        except OSError:
            pass
    with contextlib.suppress(OSError):
        candidates += socket.gethostbyname_ex(socket.gethostname())[2]
    for address in candidates:
        if not address.startswith("127.") and address != "0.0.0.0":
            return address
    return None


async def _status_body(url: str, token: str | None = None) -> tuple[int, str]:
    status, body, _ = await aget(url, token)
    return status, body


async def test_token_guards_metrics_and_details(chancy: Chancy, caplog: pytest.LogCaptureFixture):
    address = _host_address()
    if address is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    caplog.set_level(logging.WARNING, logger="chancy")
    token = "s3cret-token"
    async with Worker(
        chancy, http="0.0.0.0:0", http_token=token, register_signal_handlers=False
    ) as w:
        assert any("non-loopback" in r.getMessage() for r in caplog.records)
        base = f"http://{address}:{w.http.bound_port}"
        assert await _status_body(base + "/healthz") == (200, "ok\n")
        assert await _status_body(base + "/readyz") == (200, "ok\n")
        assert (await _status_body(base + "/metrics"))[0] == 403
        assert (await _status_body(base + "/metrics", "wrong"))[0] == 403
        assert (await _status_body(base + "/healthz", "wrong")) == (200, "ok\n")
        status, body = await _status_body(base + "/metrics", token)
        assert (status == 200 and "chancy_jobs_started_total" in body) or "# HELP" in body
        status, body = await _status_body(base + "/readyz", token)
        assert status == 200
        assert json.loads(body)["checks"]["database"]["ok"] is True
    async with Worker(chancy, http="0.0.0.0:0", register_signal_handlers=False) as w:
        base = f"http://{address}:{w.http.bound_port}"
        status, body = await _status_body(base + "/metrics", "anything")
        assert status == 403
        assert "CHANCY_HTTP_TOKEN" in body
        assert "--http-token-file" in body
        assert await _status_body(base + "/healthz", "anything") == (200, "ok\n")


# -- the HTTP server itself --------------------------------------------------------------------


async def _raw(port: int, data: bytes, *, close_write: bool = False) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        if data:
            await stream.send(data)
        chunks = []
        with anyio.fail_after(10):
            while True:
                try:
                    chunks.append(await stream.receive())
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    break
        return b"".join(chunks)


async def test_http_server_answers_only_small_get_requests(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(_http, "READ_TIMEOUT", 0.5)

    async def handler(request: _http.Request) -> _http.Response:
        if request.path == "/boom":
            raise RuntimeError("boom")
        return _http.Response.text(200, f"hello {request.path} {request.query}\n")

    log = logging.getLogger("chancy.test_http")
    async with anyio.create_task_group() as tg:
        port = await tg.start(
            lambda task_status: _http.serve(
                "127.0.0.1", 0, handler, log=log, task_status=task_status
            )
        )
        ok = await _raw(port, b"GET /x?a=1 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
        assert ok.endswith(b"hello /x a=1\n")
        assert b"Connection: close\r\n" in ok
        head = await _raw(port, b"HEAD /x HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        assert head.endswith(b"\r\n\r\n")
        post = await _raw(port, b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405")
        assert b"Allow: GET, HEAD" in post
        big = await _raw(port, b"GET /x HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n")
        assert big.startswith(b"HTTP/1.1 431")
        slow = await _raw(port, b"GET /x HTTP/1.1\r\n")  # never finishes its head
        assert slow.startswith(b"HTTP/1.1 408")
        bad = await _raw(port, b"nonsense\r\n\r\n")
        assert bad.startswith(b"HTTP/1.1 400")
        boom = await _raw(port, b"GET /boom HTTP/1.1\r\n\r\n")
        assert boom.startswith(b"HTTP/1.1 500")
        assert (await _raw(port, b""))[:0] == b""  # a client that sends nothing
        tg.cancel_scope.cancel()


async def test_unknown_route_is_404(chancy: Chancy) -> None:
    async with Worker(chancy, http="127.0.0.1:0", register_signal_handlers=False) as w:
        status, body, _ = await aget(w.http.url + "/nope")
        assert status == 404
        assert "/healthz" in body
        status, _, _ = await aget(w.http.url + "/healthz", method="POST")
        assert status == 405


def test_bad_http_address_is_refused(sync_chancy: Chancy) -> None:
    for bad in ("9464", "localhost:", "host:99999", ":80"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            Worker(sync_chancy, http=bad)


# -- chancy-supervisor: --http, --check=live, --log-format json --------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cli_env(dsn: str, prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "CHANCY_CLI_DSN": dsn,
        "CHANCY_CLI_PREFIX": prefix,
        "PYTHONPATH": str(TESTS),
    }


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "chancy.supervisor.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_supervisor_serves_http_logs_json_and_checks_liveness(
    cli_env: dict[str, str], dsn: str, prefix: str, tmp_path: Path
) -> None:
    app = Chancy(dsn, prefix=prefix, plugins=[])

    async def setup() -> None:
        async with app:
            await app.migrate()
            await app.declare(Queue("default", concurrency=1, polling_interval=1))
            await app.push(Job(func="jobs.add", kwargs={"a": "x", "b": 1}))  # fails

    anyio.run(setup)
    status_file = tmp_path / "status.json"
    port = free_port()
    log_file = tmp_path / "log.txt"
    with log_file.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "chancy.supervisor.cli",
                "--app",
                "cliapp:make",
                "--status-file",
                str(status_file),
                "--status-interval",
                "0.3",
                "--heartbeat-poll-interval",
                "1",
                "--http",
                f"127.0.0.1:{port}",
                "--log-format",
                "json",
            ],
            env=cli_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body, _ = get(f"http://127.0.0.1:{port}/readyz")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log_file.read_text()
            assert proc.poll() is None, log_file.read_text()
            time.sleep(0.2)
        assert json.loads(body)["checks"]["database"]["ok"] is True
        assert get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        # Give the failing job time to be logged.
        deadline = time.monotonic() + 30
        while "job_id" not in log_file.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        live_env = {**cli_env, "CHANCY_CLI_DSN": "postgresql://nobody@127.0.0.1:1/none"}
        started = time.perf_counter()
        live = _cli("--check=live", "--status-file", str(status_file), env=live_env)
        print(f"--check=live took {1000 * (time.perf_counter() - started):.0f} ms")
        assert live.returncode == 0, live.stderr
        assert live.stdout.startswith("ok:")
        ready = _cli(
            "--app", "cliapp:make", "--check", "--status-file", str(status_file), env=cli_env
        )
        assert ready.returncode == 0, ready.stderr
        body = get(f"http://127.0.0.1:{port}/metrics")[1]
        assert (
            value(body, "chancy_jobs_finished_total", queue="default", state="retrying")
            + value(body, "chancy_jobs_finished_total", queue="default", state="failed")
            >= 1
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    lines = [line for line in log_file.read_text().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    failed = [r for r in records if r.get("job_id") and r["level"] == "WARNING"]
    assert failed
    assert failed[0]["queue"] == "default"
    assert failed[0]["func"] == "jobs.add"
    assert failed[0]["attempt"] == 1
    assert failed[0]["worker_id"]
    assert any("stopped" in r["message"] for r in records)


def test_check_live_fails_on_a_stale_or_missing_status(tmp_path: Path) -> None:
    env = {**os.environ, "CHANCY_APP": "nowhere_to_import:app"}  # never imported
    path = tmp_path / "status.json"
    missing = _cli("--check=live", "--status-file", str(path), env=env)
    assert missing.returncode == 1
    assert "no status file" in missing.stderr
    import psutil

    me = psutil.Process()
    status = {"pid": me.pid, "create_time": me.create_time(), "interval": 1}
    path.write_text(json.dumps({**status, "updated_at": time.time() - 60}))
    stale = _cli("--check=live", "--status-file", str(path), env=env)
    assert stale.returncode == 1
    assert "stuck" in stale.stderr
    path.write_text(json.dumps({**status, "updated_at": time.time()}))
    fresh = _cli("--check=live", "--status-file", str(path), env=env)
    assert fresh.returncode == 0, fresh.stderr
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    path.write_text(json.dumps({**status, "pid": gone.pid, "updated_at": time.time()}))
    dead = _cli("--check=live", "--status-file", str(path), env=env)
    assert dead.returncode == 1
    assert "not running" in dead.stderr


def test_json_formatter_carries_the_job_fields() -> None:
    record = logging.LogRecord(
        "chancy", logging.WARNING, __file__, 1, "job %s: %s", ("j1", "x"), None
    )
    record.job_id, record.queue, record.child_pid = "j1", "default", 42
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "job j1: x"
    assert line["level"] == "WARNING"
    assert line["logger"] == "chancy"
    assert line["job_id"] == "j1"
    assert line["child_pid"] == 42
    assert "func" not in line
    assert line["time"].endswith("+00:00")
    try:
        raise KeyError("k")
    except KeyError:
        record.exc_info = sys.exc_info()
    assert "KeyError" in json.loads(JsonFormatter().format(record))["exc"]


def test_plain_format_timestamps_every_line_including_psycopg() -> None:
    code = (
        "import logging\n"
        "from chancy._logging import configure\n"
        "configure('plain', logging.INFO)\n"
        "logging.getLogger('chancy').info('from chancy')\n"
        "logging.getLogger('psycopg.pool').warning('from the pool')\n"
        "logging.getLogger('psycopg').warning('from psycopg')\n"
        "logging.getLogger('psycopg.pool').info('pool chatter, below WARNING')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    lines = run.stderr.splitlines()
    assert len(lines) == 3, lines
    stamp = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} "
    assert re.match(stamp + r"INFO chancy: from chancy$", lines[0])
    assert re.match(stamp + r"WARNING psycopg\.pool: from the pool$", lines[1])
    assert re.match(stamp + r"WARNING psycopg: from psycopg$", lines[2])


async def test_readyz_gives_up_on_a_database_that_never_answers(chancy: Chancy) -> None:
    """A server that accepts connections and then says nothing (a hung database, or a
    firewall dropping packets): /readyz answers 503 after its timeout instead of hanging."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    try:
        async with Worker(chancy, http="127.0.0.1:0", register_signal_handlers=False) as w:
            assert (await aget(w.http.url + "/readyz"))[0] == 200
            real = chancy.dsn
            chancy.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"  # the probe's DSN
            try:
                status, body, _ = await aget(w.http.url + "/readyz")
            finally:
                chancy.dsn = real
            checks = json.loads(body)["checks"]
            assert status == 503, body
            assert checks["database"]["ok"] is False, body
            assert checks["heartbeat"]["ok"] is True  # the worker's own pool is fine
            assert (await aget(w.http.url + "/healthz"))[0] == 200
            assert (await aget(w.http.url + "/readyz"))[0] == 200
    finally:
        silent.close()


async def test_readyz_without_notifications(dsn: str, prefix: str) -> None:
    app = Chancy(dsn, prefix=prefix, plugins=[], notifications=False)
    async with app:
        await app.migrate()
        async with Worker(app, http="127.0.0.1:0", register_signal_handlers=False) as w:
            status, body, _ = await aget(w.http.url + "/readyz")
            assert status == 200, body
            assert json.loads(body)["checks"]["listener"] == {"ok": True, "notifications": False}
            metrics = (await aget(w.http.url + "/metrics"))[1]
            assert value(metrics, "chancy_listener_connected") == 0


def test_supervisor_http_mistakes_are_one_line_errors(
    cli_env: dict[str, str], dsn: str, prefix: str, tmp_path: Path
) -> None:
    app = Chancy(dsn, prefix=prefix, plugins=[])

    async def migrate() -> None:
        async with app:
            await app.migrate()

    anyio.run(migrate)
    base = ["--app", "cliapp:make", "--status-file", str(tmp_path / "s.json")]
    bad = _cli(*base, "--http", "9464", env=cli_env)
    assert bad.returncode == 2
    assert "--http: expected HOST:PORT" in bad.stderr
    missing = tmp_path / "no-token"
    nofile = _cli(*base, "--http", "0.0.0.0:0", "--http-token-file", str(missing), env=cli_env)
    assert nofile.returncode == 2
    assert str(missing) in nofile.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = _cli(*base, "--http", f"127.0.0.1:{port}", env=cli_env)
    assert busy.returncode == 1
    assert (
        busy.stderr.strip()
        .splitlines()[-1]
        .endswith(f"cannot serve http on 127.0.0.1:{port}: Address already in use")
    )


async def test_the_leader_exports_queue_depth_and_age(dsn: str, prefix: str) -> None:
    """chancy_queue_jobs / chancy_queue_oldest_runnable_seconds come from one queue_stats
    query, from the leader only (so summing workers never counts a queue twice)."""
    from chancy.plugins.leadership import Leadership

    app = Chancy(dsn, prefix=prefix, plugins=[Leadership(poll_interval=1, timeout=5)])
    async with app:
        await app.migrate()
        await app.declare(Queue("held", state=Queue.State.PAUSED))  # nothing runs them
        for _ in range(3):
            await app.push(Job(func="wjobs.async_noop", queue="held"))
        async with Worker(app, http="127.0.0.1:0", register_signal_handlers=False) as w:
            await eventually(w.is_leader.is_set, timeout=20)
            text = (await aget(w.http.url + "/metrics"))[1]
            assert value(text, "chancy_queue_jobs", queue="held", state="pending") == 3
            assert value(text, "chancy_queue_jobs", queue="held", state="running") == 0
            assert value(text, "chancy_queue_oldest_runnable_seconds", queue="held") >= 0
            w.is_leader.clear()  # a follower exports none
            text = (await aget(w.http.url + "/metrics"))[1]
            assert "chancy_queue_jobs" not in text
        await app.migrate(to_version=0)


def test_a_real_supervisor_counts_every_outcome(cli_env: dict[str, str], dsn: str, prefix: str):
    """`chancy-supervisor --http`, a process-executor queue: success, failure, retry, memory
    kill, time kill and cancel, each counted once on /metrics."""
    app = Chancy(dsn, prefix=prefix, plugins=[])
    refs: dict[str, str] = {}

    def job(func: str, **kwargs: object) -> Job:
        return Job(func=func, queue="proc", kwargs=kwargs)

    async def push() -> None:
        async with app:
            await app.migrate()
            await app.declare(Queue("proc", concurrency=2, polling_interval=1))
            jobs = {
                "ok": job("jobs.add", a=1, b=2),
                "failed": job("jobs.add", a="x", b=1).with_max_attempts(1),
                "retried": job("jobs.add", a="y", b=1).with_max_attempts(2),
                "memory": job("supervisor_jobs.allocate", total_mib=600).with_limits(
                    [Limit(Limit.Type.MEMORY, 100 * MiB)]
                ),
                "time": job("supervisor_jobs.catch_everything").with_limits(
                    [Limit(Limit.Type.TIME, 1)]
                ),
                "cancelled": job("supervisor_jobs.sleep", seconds=60),
            }
            for name, made in jobs.items():
                refs[name] = (await app.push(made)).identifier

    anyio.run(push)
    port = free_port()
    env = {**cli_env, "PYTHONPATH": f"{TESTS}{os.pathsep}{TESTS / 'supervisor'}"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "chancy.supervisor.cli", "--app", "cliapp:make",
         "--status-file", str(Path(tempfile.mkdtemp()) / "status.json"),
         "--heartbeat-poll-interval", "1", "--http", f"127.0.0.1:{port}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    async def drive() -> str:
        async with app:
            running = await app.wait_for_job(refs["cancelled"], states=["running"], timeout=60)
            assert running is not None
            await app.cancel_job(refs["cancelled"])
            done = await app.wait_for_jobs(list(refs.values()), interval=0.2, timeout=90)
            assert len(done) == 6
            finished = "chancy_jobs_finished_total"

            async def settled() -> str | None:
                body = (await aget(f"http://127.0.0.1:{port}/metrics"))[1]
                count = sum(
                    value(body, finished, queue="proc", state=s)
                    for s in ("succeeded", "failed", "retrying", "cancelled")
                )
                return body if count == 7 else None  # six jobs, one of them twice

            body = await eventually(settled, 30, "seven finished attempts counted")
            await app.migrate(to_version=0)
            return body

    try:
        body = anyio.run(drive)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finished = "chancy_jobs_finished_total"
    assert value(body, "chancy_jobs_started_total", queue="proc") == 7
    assert value(body, finished, queue="proc", state="succeeded") == 1
    assert value(body, finished, queue="proc", state="retrying") == 1
    assert value(body, finished, queue="proc", state="cancelled") == 1
    assert value(body, finished, queue="proc", state="failed") == 4  # failed, retried, 2 kills
    assert value(body, "chancy_limit_kills_total", queue="proc", limit="memory") == 1
    assert value(body, "chancy_limit_kills_total", queue="proc", limit="time") == 1
    assert value(body, "chancy_job_duration_seconds_count", queue="proc") == 7
    assert value(body, "chancy_child_restarts_total", queue="proc", reason="limit") == 2
