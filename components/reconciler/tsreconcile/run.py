"""One reconciler run, in order: connect, roles, extensions, DCS parameters, restarts, summary."""

from __future__ import annotations

from contextlib import closing
from typing import Any, Callable, Dict, List, Optional

from components.shared.scram import read_password
from components.reconciler.tsreconcile import sql
from components.reconciler.tsreconcile.desired import Desired
from components.reconciler.tsreconcile.patroni import (
    PatroniAPI,
    Waiter,
    apply_dcs_parameters,
    healthy_cluster,
    leader_of,
    pending_restart,
    restart_pending_members,
    wait_until_members_see,
)
from components.reconciler.tsreconcile.report import Report

Connector = Callable[[str, int, str], Any]
"""(host, port, database) -> autocommit superuser connection."""


def superuser_connector(desired: Desired, *, connect: Callable[..., Any] = sql.driver_connect) -> Connector:
    password = read_password(desired.superuser_password_file)

    def open_connection(host: str, port: int, database: str) -> Any:
        try:
            return connect(host=host, port=port, dbname=database, user=desired.superuser, password=password,
                           connect_timeout=10, application_name="tsreconcile")
        except Exception as error:  # the driver's OperationalError; the message names the cause
            if "password authentication failed" in str(error):
                raise sql.ReconcileError(
                    f"the superuser {desired.superuser!r} cannot log in with its Secret's password: the database "
                    "holds another one (a re-created stack on retained volumes?). Set it once from inside the "
                    "primary pod with psql's \\password (README: Upgrades and credentials)"
                ) from None
            raise
    return open_connection


def reconcile_database(desired: Desired, connect: Callable[[str], Any], report: Report) -> None:
    """The SQL part, on the primary: major version check, role passwords, extension updates."""
    with closing(connect("postgres")) as connection:
        sql.check_primary(connection, desired.postgres_major)
        sql.reconcile_roles(connection, desired.roles, report)
    sql.reconcile_extensions(connect, desired.extensions, report)


def reconcile(desired: Desired, report: Report, *, connector: Optional[Connector] = None,
              api: Optional[PatroniAPI] = None, waiter: Optional[Waiter] = None) -> None:
    """Make the cluster match ``desired``; every change and check goes to ``report``."""
    api = api or PatroniAPI(desired.patroni_url, desired.restapi_user, read_password(desired.restapi_password_file))
    waiter = waiter or Waiter(desired.timeout_seconds)
    connector = connector or superuser_connector(desired)
    cluster = healthy_cluster(api, waiter, "reconciling")
    leader = leader_of(cluster)
    report.info("cluster", leader=leader["name"], members=[m["name"] for m in cluster["members"]])
    reconcile_database(desired, lambda database: connector(leader["host"], int(leader["port"]), database), report)

    def member_connection(member: Dict[str, Any]) -> Any:
        return closing(connector(member["host"], int(member["port"]), "postgres"))

    def member_settings(member: Dict[str, Any], names: List[str]) -> Dict[str, Any]:
        with member_connection(member) as connection:
            return sql.settings_of(connection, names)

    def settings_pending(member: Dict[str, Any]) -> bool:
        with member_connection(member) as connection:
            return sql.restart_pending(connection)

    if desired.dcs_parameters or desired.managed_dcs_parameters:
        apply_dcs_parameters(api, desired.dcs_parameters, report, managed=desired.managed_dcs_parameters)
        wait_until_members_see(api, desired.dcs_parameters, member_settings, waiter)
    restart_pending_members(api, waiter, report, pending_restart(api, settings_pending))
