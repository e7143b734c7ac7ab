"""Chancy side by side with its peers: the same workloads against PgQueuer, procrastinate and
upstream Chancy (PyPI), each installed in a virtualenv of its own outside the repository.

    python benchmarks/peers.py [--rounds 3] [--quick] [--only enqueue drain latency rss]
                               [--venvs DIR] [--peers NAME ...]

Run with the project's virtualenv. Every (round, peer, workload) runs in a fresh subprocess of
that peer's virtualenv (`benchmarks/peers/<peer>_driver.py`), on a database created for it and
dropped afterwards, peers in a shuffled order each round. The peak RSS of a drain's process (and
its children) is sampled here with psutil. Prints the median of the rounds per row and peer,
Chancy ÷ best peer and Chancy ÷ floor, and writes `benchmarks/results/peers-<date>-<commit>.json`.
Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import json
import os
import platform
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import psutil  # noqa: E402
import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402
from psycopg.conninfo import conninfo_to_dict  # noqa: E402

from benchmarks._harness import server_dsn, server_info  # noqa: E402

HERE = ROOT / "benchmarks" / "peers"
MiB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    label: str
    driver: str
    pip: tuple[str, ...] = ()  # empty: the project's own virtualenv
    venv: str = ""
    variant: str = ""


PEERS = [
    Peer("chancy", "Chancy (this tree)", "chancy_driver.py"),
    Peer(
        "chancy-0.26.0",
        "upstream Chancy 0.26.0",
        "upstream_chancy_driver.py",
        ("chancy==0.26.0",),
        "chancy-0.26.0",
    ),
    Peer(
        "pgqueuer-psycopg",
        "PgQueuer 1.6.0, psycopg",
        "pgqueuer_driver.py",
        ("pgqueuer[psycopg,asyncpg]==1.6.0",),
        "pgqueuer-1.6.0",
        "psycopg",
    ),
    Peer(
        "pgqueuer-asyncpg",
        "PgQueuer 1.6.0, asyncpg",
        "pgqueuer_driver.py",
        ("pgqueuer[psycopg,asyncpg]==1.6.0",),
        "pgqueuer-1.6.0",
        "asyncpg",
    ),
    Peer(
        "procrastinate",
        "procrastinate 3.10.0",
        "procrastinate_driver.py",
        ("procrastinate==3.10.0",),
        "procrastinate-3.10.0",
    ),
    Peer("floor", "floor (bare psycopg)", "floor_driver.py"),
]
SELF, FLOOR = "chancy", "floor"

#: flavour -> concurrency
DRAINS = {"async": 100, "threaded": 16, "process": 2}


@dataclasses.dataclass
class Sizes:
    enqueue: int
    one: int
    drain: int
    process: int
    seconds: float
    cap: float

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(enqueue=5_000, one=500, drain=5_000, process=2_000, seconds=5.0, cap=30.0)
        return cls(enqueue=20_000, one=2_000, drain=20_000, process=5_000, seconds=10.0, cap=60.0)


def rows(s: Sizes) -> list[tuple[str, str, str, bool]]:
    """(key, label, unit, higher is better)."""
    out = [
        ("enqueue.batch", f"enqueue {s.enqueue:,} jobs, batch API", "jobs/s", True),
        ("enqueue.one", f"enqueue {s.one:,} jobs, one at a time", "jobs/s", True),
    ]
    for flavour, c in DRAINS.items():
        n = s.process if flavour == "process" else s.drain
        what = f"{c} children" if flavour == "process" else f"concurrency {c}"
        out.append((f"drain.{flavour}", f"drain {n:,} jobs, {flavour}, {what}", "jobs/s", True))
    for key, label in (
        ("start_p50_ms", "push→start p50"),
        ("start_p99_ms", "push→start p99"),
        ("done_p50_ms", "push→done p50"),
        ("done_p99_ms", "push→done p99"),
    ):
        out.append((f"latency.{key}", f"{label} (50 jobs/s, async worker)", "ms", False))
    for flavour in DRAINS:
        out.append(
            (f"rss.{flavour}", f"peak RSS, {flavour} drain (process + children)", "MiB", False)
        )
    return out


# -- virtualenvs --------------------------------------------------------------------------------


def python_of(peer: Peer, venvs: Path) -> str:
    if not peer.pip:
        return sys.executable
    return str(venvs / peer.venv / "bin" / "python")


def ensure_venv(peer: Peer, venvs: Path, log: Any) -> None:
    """Create `venvs/<peer>` once and pip-install the pinned peer there (never here)."""
    if not peer.pip:
        return
    folder = venvs / peer.venv
    marker = folder / ".chancy-bench-installed"
    spec = " ".join(peer.pip)
    if marker.exists() and marker.read_text() == spec:
        return
    log(f"creating {folder} and installing {spec}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run(
        [str(folder / "bin" / "python"), "-m", "pip", "install", "-q", *peer.pip], check=True
    )
    marker.write_text(spec)


# -- databases ----------------------------------------------------------------------------------


def url_for(server: str, dbname: str) -> str:
    """A postgresql:// URL (asyncpg takes no key=value strings) for `dbname` on `server`."""
    p = conninfo_to_dict(server)
    auth = quote(str(p.get("user") or "postgres"))
    if p.get("password"):
        auth += ":" + quote(str(p["password"]))
    host = str(p.get("host") or "127.0.0.1")
    if host.startswith("/"):  # a socket directory
        return f"postgresql://{auth}@/{dbname}?host={quote(host)}&port={p.get('port') or 5432}"
    return f"postgresql://{auth}@{host}:{p.get('port') or 5432}/{dbname}"


@contextlib.contextmanager
def fresh_database(server: str) -> Iterator[str]:
    """A database created for one run, dropped afterwards (only the one created here)."""
    name = f"chancy_peers_{os.getpid()}_{secrets.token_hex(3)}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url_for(server, name)
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))


# -- drivers ------------------------------------------------------------------------------------


class DriverError(RuntimeError):
    pass


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    with contextlib.suppress(psutil.Error):
        total += proc.memory_info().rss
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
    return total


def run_driver(
    peer: Peer, venvs: Path, args: list[str], timeout: float, sample: bool = False
) -> tuple[dict[str, Any], int]:
    """Run `peer`'s driver in its virtualenv; (its JSON line, peak RSS of its process tree)."""
    env = os.environ.copy()
    env["PYTHONPATH"] = str(HERE)  # the drivers and peerjobs; never the repository's chancy
    env["PYTHONUNBUFFERED"] = "1"
    if peer.variant:
        args = [*args, "--variant", peer.variant]
    cmd = [python_of(peer, venvs), str(HERE / peer.driver), *args]
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        peak = 0
        ps = psutil.Process(proc.pid)
        deadline = time.monotonic() + timeout
        try:
            while proc.poll() is None:
                if sample:
                    peak = max(peak, _tree_rss(ps))
                if time.monotonic() > deadline:
                    raise DriverError(f"{peer.name} {args[0]}: no result after {timeout:.0f} s")
                time.sleep(0.05)
        finally:
            # The driver leaves with os._exit: end whatever it started (its session only).
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        lines = [line for line in out.read().splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = err.read()[-1500:]
            raise DriverError(f"{peer.name} {args[0]}: exit {proc.returncode}\n{tail}")
    return json.loads(lines[-1]), peak


# -- the rounds ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Results:
    samples: dict[str, dict[str, list[float]]] = dataclasses.field(default_factory=dict)
    missing: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    capped: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)

    def add(self, key: str, peer: str, value: float) -> None:
        self.samples.setdefault(key, {}).setdefault(peer, []).append(value)

    def lack(self, key: str, peer: str, why: str) -> None:
        self.missing.setdefault(key, {}).setdefault(peer, why)


def run_round(
    rnd: int,
    peers: list[Peer],
    only: set[str],
    sizes: Sizes,
    server: str,
    venvs: Path,
    caps: dict[str, dict[str, str | None]],
    res: Results,
    log: Any,
) -> None:
    order = peers[:]
    random.Random(rnd).shuffle(order)
    log(f"round {rnd + 1}: {', '.join(p.name for p in order)}")
    long = sizes.cap * 3 + 120

    def attempt(keys: list[str], peer: Peer, fn: Any) -> None:
        try:
            fn()
        except DriverError as exc:
            log(f"  {exc}")
            for key in keys:
                res.lack(key, peer.name, f"failed: {str(exc).splitlines()[0]}")

    if "enqueue" in only:
        for peer in order:

            def enqueue(peer: Peer = peer) -> None:
                with fresh_database(server) as db:
                    a = ["enqueue", "--dsn", db, "--jobs", str(sizes.enqueue)]
                    fig, _ = run_driver(peer, venvs, [*a, "--one", str(sizes.one)], long)
                res.add("enqueue.batch", peer.name, fig["batch_jobs_per_s"])
                res.add("enqueue.one", peer.name, fig["one_jobs_per_s"])
                log(
                    f"  enqueue {peer.name}: batch {fig['batch_jobs_per_s']:,.0f},"
                    f" one {fig['one_jobs_per_s']:,.0f} jobs/s"
                )

            attempt(["enqueue.batch", "enqueue.one"], peer, enqueue)

    if "drain" in only or "rss" in only:
        flavours = list(DRAINS) if "drain" in only else ["async"]
        for flavour in flavours:
            c = DRAINS[flavour]
            n = sizes.process if flavour == "process" else sizes.drain
            for peer in order:
                why = caps[peer.name].get(flavour)
                if why:
                    res.lack(f"drain.{flavour}", peer.name, why)
                    res.lack(f"rss.{flavour}", peer.name, why)
                    continue

                def drain(
                    peer: Peer = peer, flavour: str = flavour, c: int = c, n: int = n
                ) -> None:
                    common = ["--jobs", str(n), "--flavour", flavour, "--concurrency", str(c)]
                    with fresh_database(server) as db:
                        run_driver(peer, venvs, ["push", "--dsn", db, *common], long)
                        fig, peak = run_driver(
                            peer,
                            venvs,
                            ["drain", "--dsn", db, *common, "--cap", str(sizes.cap)],
                            long,
                            sample=True,
                        )
                    res.add(f"drain.{flavour}", peer.name, fig["jobs_per_s"])
                    res.add(f"rss.{flavour}", peer.name, peak / MiB)
                    if fig.get("capped"):
                        counts = res.capped.setdefault(f"drain.{flavour}", {})
                        counts[peer.name] = counts.get(peer.name, 0) + 1
                    log(
                        f"  drain {flavour} {peer.name}: {fig['jobs_per_s']:,.0f} jobs/s"
                        f"{' (capped)' if fig.get('capped') else ''}, peak RSS {peak / MiB:.0f} MiB"
                    )

                attempt([f"drain.{flavour}", f"rss.{flavour}"], peer, drain)

    if "latency" in only:
        keys = [k for k, *_ in rows(sizes) if k.startswith("latency.")]
        for peer in order:
            if peer.name == FLOOR:
                for key in keys:
                    res.lack(key, peer.name, "no latency floor is measured")
                continue

            def latency(peer: Peer = peer) -> None:
                with fresh_database(server) as db:
                    a = ["latency", "--dsn", db, "--rate", "50", "--seconds", str(sizes.seconds)]
                    fig, _ = run_driver(peer, venvs, [*a, "--concurrency", "100"], long)
                for key in keys:
                    res.add(key, peer.name, fig[key.split(".", 1)[1]])
                log(
                    f"  latency {peer.name}: start p50 {fig['start_p50_ms']:.1f} ms,"
                    f" done p50 {fig['done_p50_ms']:.1f} ms ({fig['done']}/{fig['jobs']} done)"
                )

            attempt(keys, peer, latency)


# -- the table ----------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    if value is None or value != value:
        return "–"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def summarise(res: Results, peers: list[Peer], sizes: Sizes) -> list[dict[str, Any]]:
    out = []
    for key, label, unit, higher in rows(sizes):
        if key not in res.samples and key not in res.missing:
            continue
        got = res.samples.get(key, {})
        medians = {p: statistics.median(v) for p, v in got.items() if v}
        others = [v for p, v in medians.items() if p not in (SELF, FLOOR)]
        best = (max(others) if higher else min(others)) if others else None
        mine, floor = medians.get(SELF), medians.get(FLOOR)
        out.append(
            {
                "key": key,
                "row": label,
                "unit": unit,
                "higher_is_better": higher,
                "medians": medians,
                "samples": got,
                "missing": res.missing.get(key, {}),
                "capped_runs": res.capped.get(key, {}),
                "best_peer": best,
                "chancy_over_best_peer": mine / best if mine and best else None,
                "chancy_over_floor": mine / floor if mine and floor else None,
            }
        )
    return out


def markdown(summary: list[dict[str, Any]], peers: list[Peer]) -> str:
    head = ["row", "unit", *[p.label for p in peers], "Chancy ÷ best peer", "Chancy ÷ floor"]
    lines = [
        "| " + " | ".join(head) + " |",
        "| " + " | ".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + " |",
    ]
    notes: dict[str, str] = {}
    for r in summary:
        cells = [r["row"], r["unit"] + (" ↑" if r["higher_is_better"] else " ↓")]
        for p in peers:
            if p.name in r["medians"]:
                mark = "*" if r["capped_runs"].get(p.name) else ""
                cells.append(_fmt(r["medians"][p.name]) + mark)
            elif p.name in r["missing"]:
                why = r["missing"][p.name]
                ref = notes.setdefault(why, f"n/a{len(notes) + 1}")
                cells.append(ref)
            else:
                cells.append("–")
        for k in ("chancy_over_best_peer", "chancy_over_floor"):
            cells.append("–" if r[k] is None else f"{r[k]:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Medians of the rounds. ↑ higher is better, ↓ lower is better (a ratio above 1 is Chancy"
        " faster on ↑ rows, slower or bigger on ↓ rows). * some rounds hit the drain's time cap:"
        " rate of the jobs finished by then."
    )
    for why, ref in notes.items():
        lines.append(f"{ref}: {why}")
    return "\n".join(lines)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="fewer jobs, 5 s of latency")
    parser.add_argument(
        "--only", nargs="+", choices=["enqueue", "drain", "latency", "rss"], metavar="NAME"
    )
    parser.add_argument(
        "--venvs",
        type=Path,
        default=Path.home() / ".cache" / "chancy-bench-peers",
        help="where the peers' virtualenvs live (outside the repository)",
    )
    parser.add_argument(
        "--peers", nargs="+", choices=[p.name for p in PEERS], help="a subset of the peers"
    )
    parser.add_argument("--out", type=Path, default=None, help="where to write the JSON")
    args = parser.parse_args(argv)
    only = set(args.only or ["enqueue", "drain", "latency", "rss"])
    peers = [p for p in PEERS if not args.peers or p.name in args.peers or p.name == SELF]
    sizes = Sizes.of(args.quick)
    venvs = args.venvs.expanduser().resolve()
    if ROOT in venvs.parents or venvs == ROOT:
        parser.error("--venvs must be outside the repository")

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    started = time.time()
    for peer in peers:
        ensure_venv(peer, venvs, log)
    caps = {}
    for peer in peers:
        caps[peer.name], _ = run_driver(peer, venvs, ["caps"], 120)
    res = Results()
    with server_dsn() as (server, server_kind):
        info = server_info(server)
        for rnd in range(args.rounds):
            run_round(rnd, peers, only, sizes, server, venvs, caps, res, log)
    summary = summarise(res, peers, sizes)
    table = markdown(summary, peers)
    print(table)
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    out = args.out or (
        ROOT / "benchmarks" / "results" / f"peers-{dt.date.today().isoformat()}-{commit}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "commit": commit,
        "dirty": bool(_git("status", "--porcelain")),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/peers.py", *(argv or sys.argv[1:])]),
        "rounds": args.rounds,
        "quick": args.quick,
        "sizes": dataclasses.asdict(sizes),
        "drains": DRAINS,
        "seconds": round(time.time() - started, 1),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "server": {"kind": server_kind, **info},
        "peers": [dataclasses.asdict(p) for p in peers],
        "capabilities": caps,
        "rows": summary,
        "markdown": table,
    }
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    log(f"wrote {out.relative_to(ROOT) if ROOT in out.parents else out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
