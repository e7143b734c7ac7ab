"""Checks on the deployment files under deploy/ and the contract in docs/deploy.md.

The files are parsed, not just grepped: the systemd unit as sections of keys, the
Containerfile as instructions, the Kubernetes manifests with PyYAML. Where the real tool is
on the machine (``systemd-analyze``), it verifies the unit too.
"""

from __future__ import annotations

import ast
import inspect
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "systemd" / "chancy-supervisor.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "chancy.env.example"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"
KUBE = DEPLOY / "kubernetes"
DOC = ROOT / "docs" / "deploy.md"


def _worker_default(name: str, fallback: int) -> int:
    """A Worker constructor default, from the code once it exists, else the documented one."""
    try:
        from chancy.worker import Worker
    except Exception:
        return fallback
    param = inspect.signature(Worker).parameters.get(name)
    if param is None or not isinstance(param.default, int):
        return fallback
    return param.default


SHUTDOWN_TIMEOUT = _worker_default("shutdown_timeout", 30)


# --- systemd ---------------------------------------------------------------------------------


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Parse a systemd unit file into {section: {key: [values, in order]}}."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in text.splitlines():
        line = pending + raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"key outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """Parse a systemd time span such as ``60``, ``90s``, ``1min 30s``."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


def size_bytes(value: str) -> int:
    """Parse a systemd byte size such as ``4G`` or ``512M``."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", value)
    assert match, f"not an absolute size: {value!r}"
    power = " KMGT".index(match.group(2) or " ")
    return int(match.group(1)) * 1024**power


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return parse_unit(UNIT.read_text())


def last(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key)
    assert values, f"[{section}] {key}= missing"
    return values[-1]


def test_unit_runs_supervisor_unprivileged(unit: dict[str, dict[str, list[str]]]) -> None:
    user = last(unit, "Service", "User")
    assert user not in ("root", "0")
    assert unit["Service"].get("DynamicUser", ["no"])[-1] == "no"
    argv = shlex.split(last(unit, "Service", "ExecStart"))
    assert argv[0].startswith("/")
    assert argv[0].endswith("/chancy-supervisor")
    assert argv[1] == "--app", "ExecStart must name the app"
    assert argv[2], "ExecStart must name the app"
    assert last(unit, "Service", "NoNewPrivileges") == "yes"
    assert last(unit, "Service", "ProtectSystem") == "strict"
    assert last(unit, "Service", "PrivateTmp") == "yes"


def test_unit_environment_file_holds_the_dsn(unit: dict[str, dict[str, list[str]]]) -> None:
    env_file = last(unit, "Service", "EnvironmentFile").lstrip("-")
    assert env_file.startswith("/")
    inline = " ".join(unit["Service"].get("Environment", []))
    assert "CHANCY_DSN" not in inline, "the DSN is a secret: keep it in the EnvironmentFile"
    keys = {
        line.partition("=")[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    }
    assert {"CHANCY_DSN", "CHANCY_APP"} <= keys
    # Every ${VAR} used in ExecStart is provided by the environment file or Environment=.
    provided = keys | {e.partition("=")[0] for e in inline.split()}
    used = set(re.findall(r"\$\{(\w+)\}", last(unit, "Service", "ExecStart")))
    assert used <= provided


def test_unit_restart_and_graceful_stop(unit: dict[str, dict[str, list[str]]]) -> None:
    assert last(unit, "Service", "Restart") == "on-failure"
    # SIGTERM to the supervisor only; it stops its own children. SIGKILL for all after timeout.
    assert last(unit, "Service", "KillMode") == "mixed"
    assert last(unit, "Service", "KillSignal") == "SIGTERM"
    assert unit["Service"].get("SendSIGKILL", ["yes"])[-1] == "yes"
    stop = seconds(last(unit, "Service", "TimeoutStopSec"))
    assert stop >= SHUTDOWN_TIMEOUT + 15, f"TimeoutStopSec={stop} leaves no margin"


def test_unit_bounds_memory(unit: dict[str, dict[str, list[str]]]) -> None:
    high = size_bytes(last(unit, "Service", "MemoryHigh"))
    hard = size_bytes(last(unit, "Service", "MemoryMax"))
    assert 0 < high < hard


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify insists that ExecStart's program exists: point it at a real executable.
    program = shlex.split(last(parse_unit(UNIT.read_text()), "Service", "ExecStart"))[0]
    stand_in = shutil.which("chancy-supervisor") or shutil.which("python3")
    assert stand_in
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace(program, stand_in))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown keys and bad values are only warnings: treat any line about our unit as failure.
    complaints = [line for line in output.splitlines() if UNIT.name in line]
    assert not complaints, "\n".join(complaints)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not found")
def test_unit_hardening_exposure_is_low() -> None:
    # Exposure is on a 0-100 scale here (the report prints it divided by 10): 40 = "4.0 OK".
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=40", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if "--offline" in result.stderr and "unrecognized" in result.stderr:
        pytest.skip("this systemd-analyze cannot assess unit files offline")
    summary = [line for line in result.stdout.splitlines() if "Overall exposure" in line]
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert summary, result.stdout[-2000:] + result.stderr


def test_unit_verify_catches_mistakes(tmp_path: Path) -> None:
    """The parser-based checks above fail on a broken unit (the tests can fail)."""
    broken = UNIT.read_text().replace("KillMode=mixed", "KillMode=control-group")
    with pytest.raises(AssertionError):
        test_unit_restart_and_graceful_stop(parse_unit(broken))
    rooted = UNIT.read_text().replace("User=chancy", "User=root")
    with pytest.raises(AssertionError):
        test_unit_runs_supervisor_unprivileged(parse_unit(rooted))


# --- container -------------------------------------------------------------------------------


def parse_containerfile(text: str) -> list[tuple[str, str]]:
    """Return the (INSTRUCTION, arguments) pairs, joining continuation lines."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        name, _, args = line.partition(" ")
        instructions.append((name.upper(), args.strip()))
    assert not pending, "dangling line continuation"
    return instructions


@pytest.fixture(scope="module")
def containerfile() -> list[tuple[str, str]]:
    return parse_containerfile(CONTAINERFILE.read_text())


def _all(instrs: list[tuple[str, str]], name: str) -> list[str]:
    return [args for n, args in instrs if n == name]


def healthcheck_argv(command: str) -> list[str]:
    """The argv a HEALTHCHECK CMD runs: exec (JSON) form as is, shell form under ``sh -c``."""
    command = command.strip()
    if command.startswith("["):
        return json.loads(command)
    return ["/bin/sh", "-c", command]


def _final_stage(instrs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (n, _) in enumerate(instrs) if n == "FROM"]
    return instrs[starts[-1] :]


def test_containerfile_base_and_user(containerfile: list[tuple[str, str]]) -> None:
    for base in _all(containerfile, "FROM"):
        assert re.match(r"python:3\.11-slim", base), base
    final = _final_stage(containerfile)
    users = _all(final, "USER")
    assert users, "the final stage must switch to a non-root user"
    assert users[-1].split(":")[0] not in ("root", "0")
    env = " ".join(_all(final, "ENV"))
    assert "PYTHONUNBUFFERED=1" in env
    assert _all(final, "STOPSIGNAL") == ["SIGTERM"]


def test_containerfile_installs_checkout(containerfile: list[tuple[str, str]]) -> None:
    runs = " ".join(_all(containerfile, "RUN"))
    assert re.search(r"pip install \.(\s|$)", runs)
    copied: set[str] = set()
    for args in _all(containerfile, "COPY"):
        if args.startswith("--from"):
            continue
        copied.update(a.rstrip("/") for a in args.split()[:-1])
    # Everything setuptools needs to build the wheel is copied into the build context.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = {"pyproject.toml", project["project"]["readme"]}
    needed |= {
        pat.rstrip("*") for pat in project["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    assert needed <= copied, f"missing from COPY: {needed - copied}"
    scripts = project["project"]["scripts"]
    assert "chancy-supervisor" in scripts
    assert "chancy" in scripts


_LOADED_CHANCY_MODULES = """
import importlib, json, sys
for target in sys.argv[1:]:
    importlib.import_module(target.partition(":")[0])
print(json.dumps(sorted(m.__file__ for n, m in sys.modules.items()
                        if n.split(".")[0] == "chancy" and getattr(m, "__file__", None))))
"""


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_pip_install_pulls_in_what_the_entry_points_import() -> None:
    """The image gets only the declared dependencies (``pip install .``): every third-party
    module that the console scripts' code imports at module level must come from one of them
    (or from an extra requested in the dependency list, like ``psycopg[pool]``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared: set[str] = set()
    for requirement in project["dependencies"]:
        match = re.match(r"([A-Za-z0-9_.-]+)(?:\[([^\]]*)\])?", requirement)
        assert match, requirement
        name = _norm(match.group(1))
        extras = [e.strip() for e in (match.group(2) or "").split(",") if e.strip()]
        declared.add(name)
        for sub in metadata.requires(name) or []:
            dist, _, marker = sub.partition(";")
            if any(re.search(rf"extra\s*==\s*['\"]{e}['\"]", marker) for e in extras):
                declared.add(_norm(re.split(r"[\s\[<>=!~;(]", dist.strip())[0]))
    loaded = subprocess.run(
        [sys.executable, "-c", _LOADED_CHANCY_MODULES, *project["scripts"].values()],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    provided_by = metadata.packages_distributions()
    undeclared: dict[str, str] = {}
    for file in json.loads(loaded.stdout):
        for node in ast.parse(Path(file).read_text()).body:
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in (n.split(".")[0] for n in names):
                if top in sys.stdlib_module_names or top in ("chancy", "__future__"):
                    continue
                if not {_norm(d) for d in provided_by.get(top, [])} & declared:
                    undeclared[top] = Path(file).name
    assert not undeclared, f"imported but not in [project].dependencies: {undeclared}"


def test_containerfile_entrypoint_and_healthcheck(containerfile: list[tuple[str, str]]) -> None:
    final = _final_stage(containerfile)
    (entry,) = _all(final, "ENTRYPOINT")
    argv = json.loads(entry)  # exec form, so the signal reaches the process, not a shell
    assert argv[0] == "tini"
    assert "chancy-supervisor" in " ".join(argv)
    if "-c" in argv:  # sh -c wrapper: it must exec, so the supervisor is tini's only child
        script = argv[argv.index("-c") + 1]
        assert script.startswith("exec chancy-supervisor --app")
    (health,) = _all(final, "HEALTHCHECK")
    options, _, command = health.partition("CMD")
    assert "--timeout" in options
    assert "--interval" in options
    line = " ".join(healthcheck_argv(command))
    # Liveness: a database outage must not mark the container unhealthy.
    assert "chancy-supervisor" in line
    assert "--check=live" in line


APP = "my.jobs:chancy"


@pytest.fixture
def fake_supervisor(tmp_path: Path) -> dict[str, str]:
    """An environment whose ``chancy-supervisor`` prints its pid and then its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "chancy-supervisor"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$$" "$@"\n')
    fake.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "CHANCY_APP": APP}


def run_argv(argv: list[str], env: dict[str, str]) -> list[str]:
    """Run argv with the fake supervisor on PATH; return the arguments it received."""
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=True)
    return proc.stdout.splitlines()[1:]


def test_container_commands_pass_the_app(
    containerfile: list[tuple[str, str]], fake_supervisor: dict[str, str]
) -> None:
    final = _final_stage(containerfile)
    (entry,) = _all(final, "ENTRYPOINT")
    argv = json.loads(entry)
    assert argv[:2] == ["tini", "--"]
    proc = subprocess.Popen(
        [*argv[2:], "--extra", "two words"],
        env=fake_supervisor,
        stdout=subprocess.PIPE,
        text=True,
    )
    out, _ = proc.communicate(timeout=30)
    pid, *args = out.splitlines()
    assert proc.returncode == 0
    assert args == ["--app", APP, "--extra", "two words"]
    assert int(pid) == proc.pid, "the shell must exec the supervisor (signals go to it)"
    (health,) = _all(final, "HEALTHCHECK")
    args = run_argv(healthcheck_argv(health.partition("CMD")[2]), fake_supervisor)
    assert args == ["--check=live"]
    assert _check_kind(args) == "live"


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint not found")
def test_containerfile_passes_hadolint() -> None:
    result = subprocess.run(
        ["hadolint", "--no-color", str(CONTAINERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


# --- kubernetes ------------------------------------------------------------------------------


def load_manifests() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    files = sorted(KUBE.glob("*.yaml")) + sorted(KUBE.glob("*.yml"))
    assert files
    for path in files:
        with path.open() as fh:
            for doc in yaml.safe_load_all(fh):
                if doc is None:
                    continue
                assert isinstance(doc, dict), path
                assert doc.get("apiVersion"), path
                assert doc.get("kind"), path
                assert doc.get("metadata", {}).get("name"), path
                docs.append(doc)
    return docs


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    by_kind: dict[str, dict[str, Any]] = {}
    for doc in load_manifests():
        assert doc["kind"] not in by_kind, f"two {doc['kind']}s"
        by_kind[doc["kind"]] = doc
    assert {"Deployment", "Job", "Secret"} <= set(by_kind)
    return by_kind


def _quantity_bytes(value: str | int) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?", str(value))
    assert match, value
    factor = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    factor |= {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    return float(match.group(1)) * factor[match.group(2)]


def _secret_refs(container: dict[str, Any]) -> dict[str, tuple[str, str]]:
    refs = {}
    for var in container.get("env", []):
        ref = var.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            refs[var["name"]] = (ref["name"], ref["key"])
    return refs


def _check_pod(spec: dict[str, Any], secret: dict[str, Any]) -> dict[str, Any]:
    assert spec["securityContext"]["runAsNonRoot"] is True
    (container,) = spec["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    name, key = _secret_refs(container)["CHANCY_DSN"]
    assert name == secret["metadata"]["name"]
    assert key in secret.get("stringData", {}) or key in secret.get("data", {})
    plain = {v["name"]: v.get("value") for v in container["env"]}
    assert "CHANCY_DSN" not in plain or plain["CHANCY_DSN"] is None
    resources = container["resources"]
    assert resources["requests"]["memory"]
    assert resources["requests"]["cpu"]
    limit = _quantity_bytes(resources["limits"]["memory"])
    assert limit >= _quantity_bytes(resources["requests"]["memory"])
    return container


def _check_kind(args: list[str]) -> str | None:
    """What the real chancy-supervisor parser makes of a probe's arguments: "live", "ready"
    (plain --check) or None (no check)."""
    from chancy.supervisor.cli import build_parser

    return build_parser().parse_args(args).check


def test_deployment(manifests: dict[str, dict[str, Any]], fake_supervisor: dict[str, str]) -> None:
    deployment = manifests["Deployment"]
    spec = deployment["spec"]
    pod = spec["template"]
    assert spec["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    assert grace >= SHUTDOWN_TIMEOUT + 15
    container = _check_pod(pod["spec"], manifests["Secret"])
    plain = {v["name"]: v.get("value") for v in container["env"]}
    assert plain.get("CHANCY_APP"), "the app to run"
    # Split probes: liveness never needs the database (an outage must not restart every pod),
    # readiness checks the database and the heartbeat.
    assert {"livenessProbe", "readinessProbe"} <= container.keys()
    assert container["livenessProbe"]["timeoutSeconds"] >= 5
    assert container["readinessProbe"]["timeoutSeconds"] >= 5
    env = fake_supervisor | {"CHANCY_APP": plain["CHANCY_APP"]}
    expected = {"livenessProbe": "live", "startupProbe": "live", "readinessProbe": "ready"}
    for probe_name, kind in expected.items():
        if probe_name not in container:
            continue
        probe = container[probe_name]
        if "httpGet" in probe:
            path = {"live": "/healthz", "ready": "/readyz"}[kind]
            assert probe["httpGet"]["path"] == path, probe_name
            continue
        command = probe["exec"]["command"]
        assert "chancy-supervisor" in " ".join(command), probe_name
        args = run_argv(command, env)
        assert _check_kind(args) == kind, (probe_name, args)
        if kind == "ready":
            assert args == ["--app", plain["CHANCY_APP"], "--check"], probe_name
        else:
            assert "--app" not in args, f"{probe_name}: --check=live does not import the app"
    # A read-only root needs a writable /tmp for the status file the check reads.
    if container["securityContext"].get("readOnlyRootFilesystem"):
        status = plain.get("CHANCY_STATUS_FILE", "/tmp/")
        mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
        assert any(status.startswith(m.rstrip("/") + "/") for m in mounts), status


def test_migrate_job(manifests: dict[str, dict[str, Any]]) -> None:
    job = manifests["Job"]
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in ("Never", "OnFailure")
    container = _check_pod(pod, manifests["Secret"])
    argv = container["command"] + container.get("args", [])
    assert argv[0] == "chancy"
    assert argv[1] == "--app"
    assert argv[2]
    assert argv[3:] == ["misc", "migrate"]
    # $(VAR) references must name env vars the container defines.
    names = {v["name"] for v in container["env"]}
    assert set(re.findall(r"\$\((\w+)\)", " ".join(argv))) <= names
    deploy_image = manifests["Deployment"]["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["image"] == deploy_image, "migrate with the image you roll out"


def _console_script(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e .)")
    return found


def test_migrate_job_command_migrates(
    manifests: dict[str, dict[str, Any]], dsn: str, prefix: str, tmp_path: Path
) -> None:
    """Run the migrate Job's command as Kubernetes would, against a real database."""
    module = f"deploy_app_{prefix.strip('_')}"
    (tmp_path / f"{module}.py").write_text(
        "import os\n"
        "from chancy import Chancy\n"
        'chancy = Chancy(os.environ["CHANCY_DSN"], prefix=os.environ["TEST_PREFIX"], plugins=[])\n'
    )
    (container,) = manifests["Job"]["spec"]["template"]["spec"]["containers"]
    env = {v["name"]: v.get("value", "") for v in container["env"]}
    env |= {"CHANCY_APP": f"{module}:chancy", "CHANCY_DSN": dsn, "TEST_PREFIX": prefix}
    env |= {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    argv = [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], a) for a in container["args"]]
    chancy_cli = _console_script(container["command"][0])

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [chancy_cli, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
        )

    check = ["--app", env["CHANCY_APP"], "misc", "check-schema"]
    assert run(*check).returncode == 1, "a fresh prefix needs migrating"
    migrated = run(*argv)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert run(*argv).returncode == 0, "migrating twice is harmless"
    after = run(*check)
    assert after.returncode == 0, after.stdout + after.stderr


def test_manifests_match_the_kubernetes_schemas() -> None:
    """Strict schema validation (unknown or misspelt fields fail), where the schemas are at hand."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    version = kubernetes_validate.latest_version()
    for doc in load_manifests():
        kubernetes_validate.validate(doc, version, strict=True)


def test_secret_example_is_an_example(manifests: dict[str, dict[str, Any]]) -> None:
    dsn = manifests["Secret"]["stringData"]["dsn"]
    assert dsn.startswith("postgresql://")
    assert "change-me" in dsn


# --- docs ------------------------------------------------------------------------------------


def test_docs_cover_the_contract() -> None:
    text = DOC.read_text()
    for needle in (
        "--check",
        "notifications=False",
        "idle_in_transaction_session_timeout",
        "autovacuum",
        "misc migrate",
        "SIGTERM",
        "SIGKILL",
        "heartbeat_timeout",
        "max_connection_pool_size",
        "CHANCY_STATUS_FILE",
    ):
        assert needle in text, needle
    for path in (UNIT, CONTAINERFILE, KUBE / "deployment.yaml", KUBE / "migrate-job.yaml"):
        assert str(path.relative_to(ROOT)) in text, path


def test_the_grafana_dashboard_charts_only_documented_metrics() -> None:
    """deploy/grafana/chancy-dashboard.json parses, and every metric its queries name is one
    that docs/metrics.md documents (the names are a contract)."""
    root = Path(__file__).parent.parent
    dashboard = json.loads((root / "deploy/grafana/chancy-dashboard.json").read_text())
    documented = set(re.findall(r"`(chancy_[a-z_]+)`", (root / "docs/metrics.md").read_text()))
    assert dashboard["panels"]
    used = set()
    for panel in dashboard["panels"]:
        assert panel["title"]
        assert panel["targets"]
        for target in panel["targets"]:
            used |= set(re.findall(r"\b(chancy_[a-z_]+)", target["expr"]))
    bare = {re.sub(r"_(bucket|sum|count)$", "", name) for name in used}
    assert bare <= documented, bare - documented
    assert len(bare) >= 10
