"""A control group per child process, where the supervisor may create one (blocking helpers).

A process cannot leave its cgroup by ``setsid``, a double ``fork`` or re-parenting to init,
so the cgroup is the one complete list of what a job started. With it the supervisor
kills *everything* a job left behind (v2: ``cgroup.kill``; v1: freeze the ``freezer`` group,
SIGKILL every member, thaw), and measures memory that is no process's RSS: pages written into
a tmpfs such as ``/dev/shm`` are charged to the cgroup (``shmem`` in ``memory.stat``). A
kernel limit (``memory.max``, v1 ``memory.limit_in_bytes``) backs the monitor up.

Where no cgroup can be made (not root, no delegated subtree, read-only ``/sys/fs/cgroup``) the
supervisor falls back to walking the process tree and killing the child's session; see
docs/process-children.md for which mechanism is in force and how a unit delegates a cgroup.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_path(controller: str | None) -> str | None:
    """This process's cgroup path for *controller* (None: the v2 unified hierarchy)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, names, path = line.split(":", 2)
        if controller is None and names == "":
            return path
        if controller is not None and controller in names.split(","):
            return path
    return None


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


class Cgroups:
    """Where this supervisor's per-child cgroups go: one base per supervisor process."""

    def __init__(self, version: int, bases: dict[str, Path]) -> None:
        self.version = version
        self.bases = bases  # controller ("unified", "freezer", "memory") -> base directory

    @classmethod
    def detect(cls) -> Cgroups | None:
        """A base for this process's children, or None where cgroups cannot be made."""
        if os.environ.get("CHANCY_NO_CGROUPS"):
            return None
        name = f"chancy-{os.getpid()}"
        unified = _own_path(None)
        if (ROOT / "cgroup.controllers").exists() and unified is not None:
            return cls._detect_v2(ROOT / unified.lstrip("/"), name)
        bases: dict[str, Path] = {}
        for controller in ("freezer", "memory"):
            own = _own_path(controller)
            if own is None:
                continue
            base = ROOT / controller / own.lstrip("/") / name
            if _writable_dir(base.parent) and _try_mkdir(base):
                _remove_stale(base.parent)
                bases[controller] = base
        if "freezer" not in bases:  # killing the whole tree is what a cgroup is for here
            for base in bases.values():
                _rmdir(base)
            return None
        return cls(1, bases)

    @classmethod
    def _detect_v2(cls, own: Path, name: str) -> Cgroups | None:
        """cgroup v2: the supervisor's own cgroup must be writable (root, or a unit with
        ``Delegate=yes``). A cgroup with processes in it cannot hand controllers to its
        children ("no internal processes"), so the supervisor first moves itself into a
        leaf of its own (``supervisor``), then children get siblings of that leaf."""
        if own == ROOT or not _writable_dir(own):
            return None
        try:
            leaf = own / "supervisor"
            leaf.mkdir(exist_ok=True)
            (leaf / "cgroup.procs").write_text(str(os.getpid()))
            with contextlib.suppress(OSError):  # memory accounting if the controller is there
                (own / "cgroup.subtree_control").write_text("+memory")
            base = own / name
            base.mkdir(exist_ok=True)
            with contextlib.suppress(OSError):
                (base / "cgroup.subtree_control").write_text("+memory")
        except OSError:
            return None
        _remove_stale(own)
        return cls(2, {"unified": base})

    @property
    def mechanism(self) -> str:
        if self.version == 2:
            return f"cgroup v2 ({self.bases['unified']})"
        return "cgroup v1 (" + ", ".join(f"{c}: {p}" for c, p in self.bases.items()) + ")"

    def for_child(self, pid: int) -> ChildCgroup | None:
        """A cgroup of its own for child *pid*, with the child moved in (None on failure)."""
        dirs = {c: base / f"child-{pid}" for c, base in self.bases.items()}
        made = []
        try:
            for path in dirs.values():
                path.mkdir()
                made.append(path)
            for path in dirs.values():
                (path / "cgroup.procs").write_text(str(pid))
        except OSError:
            for path in made:
                _rmdir(path)
            return None
        return ChildCgroup(self.version, dirs)

    def close(self) -> None:
        for base in self.bases.values():
            _rmdir(base)


class ChildCgroup:
    """One child's cgroup (the child and everything it starts)."""

    def __init__(self, version: int, dirs: dict[str, Path]) -> None:
        self.version = version
        self.dirs = dirs
        self._final_oom_kills: int | None = None  # read just before the group was removed

    def _file(self, controller: str, name: str) -> Path:
        key = "unified" if self.version == 2 else controller
        return self.dirs[key] / name

    def pids(self) -> list[int]:
        """Pids in the child's cgroup (read after every job: plain syscalls, no text layer)."""
        key = "unified" if self.version == 2 else "freezer"
        path = str(self.dirs[key] / "cgroup.procs")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                data = chunk = os.read(fd, 65536)
                while chunk:
                    chunk = os.read(fd, 65536)
                    data += chunk
            finally:
                os.close(fd)
            return [int(x) for x in data.split()]
        except (OSError, ValueError):
            return []

    def memory_bytes(self) -> int | None:
        """Anonymous memory plus tmpfs/shared-memory pages charged to the group, or None."""
        if self.version == 1 and "memory" not in self.dirs:
            return None
        try:
            text = self._file("memory", "memory.stat").read_text()
        except OSError:
            return None
        stat = dict(line.split() for line in text.splitlines() if " " in line)
        if self.version == 2:
            return int(stat.get("anon", 0)) + int(stat.get("shmem", 0))
        return int(stat.get("total_rss", stat.get("rss", 0))) + int(
            stat.get("total_shmem", stat.get("shmem", 0))
        )

    def set_memory_max(self, limit: int | None) -> None:
        """The kernel's hard limit for the group (None: no limit)."""
        if self.version == 1 and "memory" not in self.dirs:
            return
        name = "memory.max" if self.version == 2 else "memory.limit_in_bytes"
        value = ("max" if self.version == 2 else "-1") if limit is None else str(limit)
        with contextlib.suppress(OSError):
            self._file("memory", name).write_text(value)

    def oom_kills(self) -> int:
        """How many times the kernel's limit has been hit (v1 ``failcnt``, v2 ``oom_kill``)."""
        if self._final_oom_kills is not None:
            return self._final_oom_kills
        try:
            if self.version == 2:
                events = self._file("memory", "memory.events").read_text().split()
                pairs = dict(zip(events[::2], events[1::2], strict=False))
                return int(pairs.get("oom_kill", 0))
            if "memory" not in self.dirs:
                return 0
            return int(self._file("memory", "memory.failcnt").read_text())
        except (OSError, ValueError):
            return 0

    def _freeze(self, frozen: bool) -> None:
        if self.version == 2:
            path, value = self.dirs["unified"] / "cgroup.freeze", "1" if frozen else "0"
        else:
            path, value = self.dirs["freezer"] / "freezer.state", "FROZEN" if frozen else "THAWED"
        with contextlib.suppress(OSError):
            path.write_text(value)

    def kill_others(self, keep: int) -> list[int]:
        """SIGKILL every process in the group but *keep* (what a finished job left running:
        daemons, double-forked grandchildren); returns their pids."""
        others = [pid for pid in self.pids() if pid != keep]
        if not others:
            return []
        self._freeze(True)  # nothing forks while we kill (the child itself just pauses)
        try:
            others = [pid for pid in self.pids() if pid != keep]
            for pid in others:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        finally:
            self._freeze(False)  # a frozen process cannot die
        deadline = time.monotonic() + 5
        while any(pid != keep for pid in self.pids()) and time.monotonic() < deadline:
            time.sleep(0.002)
        return others

    def kill(self, wait: float = 5.0) -> bool:
        """SIGKILL every process in the group, escaped daemons included; True once empty."""
        killed = False
        if self.version == 2:
            try:
                (self.dirs["unified"] / "cgroup.kill").write_text("1")
                killed = True
            except OSError:  # kernels before 5.14 have no cgroup.kill
                pass
        if not killed:
            self._freeze(True)  # nothing can fork while we kill
            for pid in self.pids():
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            self._freeze(False)  # a frozen process cannot die
        deadline = time.monotonic() + wait
        while self.pids():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def remove(self) -> None:
        if self._final_oom_kills is None:
            self._final_oom_kills = self.oom_kills()
        for path in self.dirs.values():
            _rmdir(path)


def _remove_stale(parent: Path) -> None:
    """Remove the (empty) cgroups of supervisors that died without cleaning up (kill -9)."""
    try:
        entries = list(parent.glob("chancy-*"))
    except OSError:
        return
    for base in entries:
        try:
            pid = int(base.name.removeprefix("chancy-"))
        except ValueError:
            continue
        if pid == os.getpid() or _alive(pid):
            continue
        for child in base.glob("child-*"):
            _rmdir(child)  # fails (and stays) while a process still lives in it
        _rmdir(base)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _try_mkdir(path: Path) -> bool:
    try:
        path.mkdir(exist_ok=True)
        return True
    except OSError:
        return False


def _rmdir(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.rmdir()
