"""One Job run, in order: a healthy cluster, DCS settings (synchronous mode) and parameters, restarts, summary.

Role passwords and extension updates are not here: they need the superuser, who has no network login; the
role agent beside every member does them over the pod's socket (``agent``)."""

from __future__ import annotations

from contextlib import closing
from typing import Any, Callable, Dict, List, Optional

from ...shared.scram import read_password
from . import sql
from .desired import Desired
from .patroni import (
    PatroniAPI,
    Waiter,
    apply_dcs_parameters,
    apply_dcs_settings,
    healthy_cluster,
    leader_of,
    pending_restart,
    restart_pending_members,
    wait_until_members_see,
)
from .report import Report

Connector = Callable[[str, int], Any]
"""(host, port) -> autocommit connection to that member as the settings (``pg_monitor``) role."""


def settings_connector(desired: Desired, *, connect: Callable[..., Any] = sql.driver_connect) -> Connector:
    """Connections that read ``pg_settings`` as the monitoring role, verifying the server when TLS is on
    (``verify-full``: the member's name from Patroni is in its certificate)."""
    password = read_password(desired.settings_password_file)
    tls = {"sslmode": desired.sslmode, **({"sslrootcert": desired.ca_file} if desired.ca_file else {})}

    def open_connection(host: str, port: int) -> Any:
        return connect(host=host, port=port, dbname=desired.settings_database, user=desired.settings_user,
                       password=password, connect_timeout=10, application_name="tsreconcile", **tls)
    return open_connection


def reconcile(desired: Desired, report: Report, *, connector: Optional[Connector] = None,
              api: Optional[PatroniAPI] = None, waiter: Optional[Waiter] = None) -> None:
    """Make the cluster match ``desired``; every change and check goes to ``report``."""
    api = api or PatroniAPI(desired.patroni_url, desired.restapi_user, read_password(desired.restapi_password_file),
                            ca_file=desired.ca_file)
    waiter = waiter or Waiter(desired.timeout_seconds)
    connector = connector or settings_connector(desired)
    cluster = healthy_cluster(api, waiter, "reconciling")
    leader = leader_of(cluster)
    report.info("cluster", leader=leader["name"], members=[m["name"] for m in cluster["members"]])

    def member_connection(member: Dict[str, Any]) -> Any:
        return closing(connector(member["host"], int(member["port"])))

    def member_settings(member: Dict[str, Any], names: List[str]) -> Dict[str, Any]:
        with member_connection(member) as connection:
            return sql.settings_of(connection, names)

    def settings_pending(member: Dict[str, Any]) -> bool:
        with member_connection(member) as connection:
            return sql.restart_pending(connection)

    if desired.dcs_settings:
        apply_dcs_settings(api, desired.dcs_settings, report)
    if desired.dcs_parameters or desired.managed_dcs_parameters:
        apply_dcs_parameters(api, desired.dcs_parameters, report, managed=desired.managed_dcs_parameters)
        wait_until_members_see(api, desired.dcs_parameters, member_settings, waiter)
    restart_pending_members(api, waiter, report, pending_restart(api, settings_pending))
