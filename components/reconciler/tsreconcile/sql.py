"""The SQL half: role passwords as SCRAM verifiers, extension updates, settings as each member sees them.

Passwords never travel as cleartext: the verifier is computed here (``components.shared.scram``) and
the server only ever receives ``ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'``. The session that sends
it has statement logging and pg_stat_statements' utility tracking switched off, so not even the
verifier is recorded. A role whose stored verifier already accepts the password is left alone, which
is what makes a second run a no-op.
"""

from __future__ import annotations

import hashlib
import re
from contextlib import closing
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ...shared.scram import read_password, scram_verifier, verifier_matches
from .desired import LookupSpec, RoleSpec
from .report import Report

Connect = Callable[[str], Any]
"""Opens an autocommit connection to the named database as the superuser."""

QUIET_SESSION = (
    "SET log_statement = 'none'",
    "SET log_min_duration_statement = -1",
    "SET log_min_error_statement = 'panic'",
    "SET pg_stat_statements.track_utility = off",
)
"""Session settings before any statement that carries a verifier (superuser-only settings)."""


class ReconcileError(RuntimeError):
    """A declared state the reconciler cannot (or must not) reach; the message says why and what to do."""


def driver_connect(**params: Any) -> Any:
    """An autocommit connection through psycopg 3, else psycopg2 (whichever the image's Patroni uses)."""
    try:
        import psycopg  # type: ignore[import-not-found]
    except ImportError:
        import psycopg2  # type: ignore[import-not-found]

        connection = psycopg2.connect(**params)
        connection.autocommit = True
        return connection
    return psycopg.connect(autocommit=True, **params)


def rows(connection: Any, query: str, params: Sequence[Any] = ()) -> List[Tuple[Any, ...]]:
    """All rows of ``query`` (an empty list for statements without a result)."""
    with closing(connection.cursor()) as cursor:
        cursor.execute(query, tuple(params) or None)
        return list(cursor.fetchall()) if cursor.description is not None else []


def execute_formatted(connection: Any, template: str, *args: str) -> None:
    """Run ``format(template, args...)`` built by the server (%I/%L quoting), e.g. ALTER ROLE."""
    escaped = template.replace("%", "%%")  # the driver's placeholders are %s; format()'s are %I/%L
    (statement,) = rows(connection, f"SELECT format('{escaped}', {', '.join(['%s::text'] * len(args))})", args)[0]
    rows(connection, statement)


def server_major(connection: Any) -> int:
    return int(rows(connection, "SHOW server_version_num")[0][0]) // 10000


def check_major(connection: Any, expected_major: Optional[int]) -> None:
    """Refuse a server of another major than declared."""
    major = server_major(connection)
    if expected_major is not None and major != expected_major:
        raise ReconcileError(
            f"the server runs PostgreSQL {major} but {expected_major} is declared; in-place major upgrades are not supported"
        )


def _secret_verifier(spec: RoleSpec) -> Tuple[Callable[[], str], Callable[[str], bool]]:
    """How to make the verifier to set for ``spec`` (computed only when needed), and whether a stored verifier
    already accepts its Secret: a password is checked against the stored verifier (which has its own salt); a
    precomputed verifier must be it."""
    secret = read_password(spec.password_file)
    if not spec.verifier_in_file:
        return lambda: scram_verifier(secret), lambda stored: verifier_matches(stored, secret)
    if not secret.startswith("SCRAM-SHA-256$"):
        raise ReconcileError(f"{spec.password_file} holds no SCRAM verifier: refusing to set it as {spec.role}'s password")
    return lambda: secret, lambda stored: stored == secret


def reconcile_roles(connection: Any, roles: Iterable[RoleSpec], report: Report) -> None:
    """Each role exists and its stored SCRAM verifier accepts the password (or is the verifier) in its Secret file."""
    for statement in QUIET_SESSION:
        rows(connection, statement)
    for spec in roles:
        verifier, accepts = _secret_verifier(spec)
        found = rows(connection, "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (spec.role,))
        if not found:
            execute_formatted(connection, f"CREATE ROLE %I {spec.create_options} PASSWORD %L", spec.role, verifier())
            report.change("role", spec.role, action="created with a SCRAM verifier", options=spec.create_options)
        elif accepts(found[0][0]):
            report.unchanged("role", spec.role, action="password already matches its Secret")
        else:
            execute_formatted(connection, "ALTER ROLE %I PASSWORD %L", spec.role, verifier())
            report.change("role", spec.role, action="password set from its Secret (SCRAM verifier)")


def reconcile_lookup(connect: Connect, spec: LookupSpec, report: Report) -> None:
    """The pooler's lookup function and grants are the declared ones: the statements re-run (in one
    transaction) only when they differ from the marker left by the last run."""
    marker = "tsreconcile " + hashlib.sha256("\n".join(spec.statements).encode()).hexdigest()[:16]
    where = f"{spec.database}.{spec.schema}"
    with closing(connect(spec.database)) as connection:
        applied = rows(connection, "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = %s",
                       (spec.schema,))
        if applied and applied[0][0] == marker:
            report.unchanged("lookup", where, action="function and grants as declared")
            return
        rows(connection, "BEGIN")
        for statement in spec.statements:
            rows(connection, statement)
        execute_formatted(connection, "COMMENT ON SCHEMA %I IS %L", spec.schema, marker)
        rows(connection, "COMMIT")
    report.change("lookup", where, action="function and grants (re)created", marker=marker)


def version_key(version: str) -> Tuple[Any, ...]:
    """``2.18.2`` -> (2, 18, 2); non-numeric parts compare as text after numbers."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"[.\-]", version))


def reconcile_extensions(connect: Connect, extensions: Sequence[str], report: Report) -> None:
    """Update each listed extension to the image's default version in every database that has it."""
    with closing(connect("postgres")) as admin:
        databases = [r[0] for r in rows(admin, "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1")]
    for database in databases:
        with closing(connect(database)) as connection:
            installed = rows(
                connection,
                "SELECT name, installed_version, default_version FROM pg_available_extensions "
                "WHERE installed_version IS NOT NULL AND name = ANY(%s) ORDER BY name",
                (list(extensions),),
            )
        for name, before, target in installed:
            where = f"{database}.{name}"
            if before == target:
                report.unchanged("extension", where, version=before)
                continue
            if version_key(target) < version_key(before):
                raise ReconcileError(
                    f"extension {where} is at {before} but the image ships {target}: the image is older than the data; "
                    "downgrades are not supported, use an image with the same or a newer version"
                )
            # TimescaleDB requires ALTER EXTENSION ... UPDATE to be the first statement of a fresh session.
            with closing(connect(database)) as fresh:
                rows(fresh, f"ALTER EXTENSION {name} UPDATE")
                after = rows(fresh, "SELECT extversion FROM pg_extension WHERE extname = %s", (name,))[0][0]
            report.change("extension", where, before=before, after=after)


def settings_of(connection: Any, names: Iterable[str]) -> Dict[str, Tuple[str, Optional[str], str, bool]]:
    """name -> (setting, unit, vartype, pending_restart) as this server sees it."""
    found = rows(
        connection,
        "SELECT name, setting, unit, vartype, pending_restart FROM pg_settings WHERE name = ANY(%s)",
        (sorted(names),),
    )
    return {name: (setting, unit, vartype, bool(pending)) for name, setting, unit, vartype, pending in found}


def restart_pending(connection: Any) -> bool:
    """True if this server has settings that wait for a restart."""
    return bool(rows(connection, "SELECT count(*) FROM pg_settings WHERE pending_restart")[0][0])
