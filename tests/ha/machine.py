"""The machine side of the HA harness: server binaries, the unprivileged user, processes and loopback ports.

Used by :mod:`tests.ha.cluster`; nothing here knows about Patroni's configuration.
"""

from __future__ import annotations

import importlib.metadata
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RUN_AS = "postgres"
"""OS user of every server process (Debian's ``postgres``: PostgreSQL refuses root, pg_hba peer-maps it)."""
POSTGRES_BIN_CANDIDATES = ("/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin")
ETCD_CANDIDATES = ("/usr/bin/etcd", "/usr/local/bin/etcd")


class MachineError(RuntimeError):
    """The machine lacks something the harness needs, or a process could not be handled."""


def postgres_bin_dir() -> Path | None:
    """Debian's PostgreSQL server binaries, newest first."""
    for candidate in POSTGRES_BIN_CANDIDATES:
        if (Path(candidate) / "postgres").is_file():
            return Path(candidate)
    return None


def etcd_binary() -> Path | None:
    for candidate in ETCD_CANDIDATES:
        if Path(candidate).is_file():
            return Path(candidate)
    return shutil.which("etcd") and Path(str(shutil.which("etcd")))


def missing_requirements() -> str | None:
    """Why the harness cannot run here (a skip reason), or None."""
    if postgres_bin_dir() is None:
        return "PostgreSQL server binaries not found (Debian package postgresql-15; scripts/test installs it as root)"
    if etcd_binary() is None:
        return "etcd not found (Debian package etcd-server; scripts/test installs it as root)"
    try:
        pwd.getpwnam(RUN_AS)
    except KeyError:
        return f"no {RUN_AS!r} OS user (created by Debian's postgresql-common)"
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name != RUN_AS:
        return f"must run as root (to start servers as {RUN_AS!r}) or as {RUN_AS!r}"
    try:
        importlib.metadata.distribution("python-etcd")
    except importlib.metadata.PackageNotFoundError:
        return "python-etcd is not installed (requirements-dev.txt)"
    if python_for(RUN_AS) is None:
        return f"no python{sys.version_info.major}.{sys.version_info.minor} interpreter that {RUN_AS!r} may run"
    return None


def free_loopback_network() -> str:
    """A random ``127.a.b`` prefix whose .2 (etcd) and .10-.19 (members) addresses have the ports free."""
    for _ in range(50):
        prefix = f"127.{random.randint(1, 254)}.{random.randint(0, 254)}"
        addresses = [(f"{prefix}.2", 2379), (f"{prefix}.2", 2380)]
        addresses += [(f"{prefix}.{10 + i}", port) for i in range(10) for port in (5432, 8008)]
        if all(_port_free(host, port) for host, port in addresses):
            return prefix
    raise MachineError("no free loopback network found")


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def as_user() -> dict[str, Any]:
    """subprocess keyword arguments that run a child as :data:`RUN_AS` when we are root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam(RUN_AS)
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def chown(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam(RUN_AS)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def killpg(pgid: int, sig: int) -> None:
    if pgid <= 1 or pgid == os.getpgrp():
        return
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap(process: subprocess.Popen[bytes], *, timeout: float, grace: float = 0.0) -> None:
    """Give ``process`` ``grace`` seconds to exit, then SIGKILL the process group it leads; wait for it."""
    for wait, kill in ((grace, False), (timeout, True)):
        if kill and process.poll() is None:
            killpg(process.pid, signal.SIGKILL)
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def process_group(pid: int) -> int:
    """The process group of ``pid`` (Patroni starts the postmaster in a session of its own, led by a helper
    process that exits, so the postmaster is not its group's leader)."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return pid


def processes_under(root: Path) -> list[int]:
    """PIDs whose command line mentions ``root`` (this cluster's unique temp dir: only our processes)."""
    marker = str(root).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _reachable_by_others(path: Path) -> bool:
    """Every directory above ``path`` is traversable and the file executable by other users."""
    resolved = path.resolve()
    if not resolved.is_file() or not resolved.stat().st_mode & 0o001:
        return False
    return all(parent.stat().st_mode & 0o001 for parent in resolved.parents)


def python_for(user: str) -> Path | None:
    """An interpreter of this Python's version that ``user`` can run (a venv's may live under /root)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [Path(sys.executable), Path(sysconfig.get_config_var("BINDIR") or "/usr/bin") / f"python{version}",
                  Path(f"/usr/bin/python{version}"), Path(f"/usr/local/bin/python{version}")]
    if os.geteuid() != 0 and pwd.getpwuid(os.geteuid()).pw_name == user:
        return Path(sys.executable)
    for candidate in candidates:
        if candidate.exists() and _reachable_by_others(candidate):
            return candidate.resolve()
    return None


def vendor_distributions(target: Path, names: Iterable[str]) -> None:
    """Copy the installed files of ``names`` and their dependencies into ``target`` (a PYTHONPATH the
    unprivileged user can read: the clone and its venv may sit in a directory only root may enter)."""
    from packaging.requirements import Requirement

    seen: set[str] = set()
    queue = list(names)
    while queue:
        name = queue.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for requirement in distribution.requires or []:
            parsed = Requirement(requirement)
            if parsed.marker is None or parsed.marker.evaluate({"extra": ""}):
                queue.append(parsed.name)
        for file in distribution.files or []:
            source = Path(str(distribution.locate_file(file)))
            if ".." in file.parts or "__pycache__" in file.parts or not source.is_file():
                continue
            destination = target / file
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
    for path in [target, *target.rglob("*")]:
        path.chmod(path.stat().st_mode | (0o755 if path.is_dir() else 0o644))
