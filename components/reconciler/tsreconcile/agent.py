"""The role agent: the reconciler's database half, in a sidecar beside every member.

Role passwords and extension updates need the superuser, and the superuser has no network login at all
(``pg_hba``: the pod's Unix socket, ``peer``). So this half runs inside each member pod, on the database
image, as the image's ``postgres`` user, and reaches its own PostgreSQL over the shared socket directory:
no password and no network are involved (CloudNativePG's instance manager manages roles the same way).

Every ``TSRECONCILE_AGENT_INTERVAL`` seconds (default 30) a round:

1. re-reads the declaration (a mounted ConfigMap file) and the role passwords (mounted Secret files; the
   kubelet refreshes both in place, so a rotated password lands without restarting the pod);
2. with TLS, on every member, makes PostgreSQL and the REST API serve the mounted certificate once it was
   renewed (``certs``: a reload through the member's own Patroni);
3. connects to its own member; a replica (``pg_is_in_recovery()``), including a standby cluster's leader,
   does nothing more: the primary's changes reach it by replication;
4. on the primary, refuses a server of another major than declared, then makes every declared role's
   SCRAM verifier accept its Secret's password, updates the listed extensions to the image's version and,
   with a pooler, keeps its lookup role and ``auth_query`` function (``sql.reconcile_roles`` /
   ``reconcile_extensions`` / ``reconcile_lookup``: nothing is sent when they already match).

Rounds that change nothing are silent; every change and every failure is one JSON line on stdout (a failed
round is retried at the next one: the member may be starting or just demoted). Each round touches the
heartbeat file, which is what the container's probes check. New agent code (a ConfigMap change) takes
effect when the pod next restarts; a new declaration or password, at the next round.

Usage: ``python3 -m components.reconciler.tsreconcile.agent [--once]``.
"""

from __future__ import annotations

import io
import os
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any, Callable, List, Optional, TextIO, Tuple

from . import certs, sql
from .desired import DatabaseDesired
from .report import Report

DECLARATION_ENV = "TSRECONCILE_AGENT_DECLARATION"
"""Path of the declaration's JSON file (:class:`DatabaseDesired`)."""
INTERVAL_ENV = "TSRECONCILE_AGENT_INTERVAL"
HEARTBEAT_ENV = "TSRECONCILE_AGENT_HEARTBEAT"
DEFAULT_INTERVAL_SECONDS = 30.0
DEFAULT_HEARTBEAT = "/tmp/tsreconcile-agent.alive"
APPLICATION_NAME = "tsreconcile-agent"


def socket_connector(desired: DatabaseDesired, *, connect: Callable[..., Any] = sql.driver_connect) -> sql.Connect:
    """database -> an autocommit superuser connection to this pod's PostgreSQL over its Unix socket."""
    return lambda database: connect(host=desired.socket_dir, dbname=database, user=desired.superuser,
                                    connect_timeout=10, application_name=APPLICATION_NAME)


def converge(desired: DatabaseDesired, connect: sql.Connect, report: Report) -> bool:
    """One pass: on every member, a renewed certificate gets served; then the database half, on the primary
    only (False, and nothing more done, on a replica)."""
    if desired.tls is not None:
        certs.reload_if_renewed(desired.tls, report)
    with closing(connect("postgres")) as connection:
        if sql.rows(connection, "SELECT pg_is_in_recovery()")[0][0]:
            report.info("this member is a replica: nothing to do")
            return False
        sql.check_major(connection, desired.postgres_major)
        sql.reconcile_roles(connection, desired.roles, report)
    sql.reconcile_extensions(connect, desired.extensions, report)
    if desired.lookup is not None:
        sql.reconcile_lookup(connect, desired.lookup, report)
    return True


def run_round(declaration: Path, *, out: TextIO, connect_with: Callable[[DatabaseDesired], sql.Connect] = socket_connector) -> Tuple[Report, Optional[str]]:
    """Read the declaration and converge; write the round's events to ``out`` if it changed or failed.
    Returns the report and the failure (None when the round succeeded)."""
    buffer = io.StringIO()
    report = Report(buffer)
    error: Optional[str] = None
    try:
        desired = DatabaseDesired.from_json(declaration.read_text(encoding="utf-8"))
        converge(desired, connect_with(desired), report)
    except Exception as failure:  # noqa: BLE001 - the agent must outlive any one round; the next one retries
        error = f"{type(failure).__name__}: {failure}".strip()
    if error is not None or report.changes:
        report.summary(error=error)
        out.write(buffer.getvalue())
        out.flush()
    return report, error


def _touch(path: Path) -> None:
    path.touch()  # also refreshes the mtime of an existing file


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    declaration = Path(os.environ[DECLARATION_ENV])
    interval = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL_SECONDS))
    heartbeat = Path(os.environ.get(HEARTBEAT_ENV, DEFAULT_HEARTBEAT))
    while True:
        _touch(heartbeat)
        _, error = run_round(declaration, out=sys.stdout)
        _touch(heartbeat)
        if "--once" in args:
            return 0 if error is None else 1
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
