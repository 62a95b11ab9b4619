"""PgBouncer authentication without copying application passwords: ``auth_query`` through a lookup role.

PgBouncer logs in to PostgreSQL as the low-privilege lookup role (its password is the only one PgBouncer
holds, in ``userlist.txt``) and asks ``pgbouncer.get_auth(user)`` for the connecting user's SCRAM
verifier. It then authenticates the client with SCRAM against that verifier and, because the client
proved itself with SCRAM, logs in to the server as that user with the client's SCRAM keys (PgBouncer's
SCRAM pass-through, 1.14+): SCRAM end to end, no application password in any pooler file.

The lookup function is ``SECURITY DEFINER`` (owned by the bootstrap superuser), pinned to
``pg_catalog``, executable only by the lookup role, and never returns superusers, replication roles or
the cluster's internal roles: the pooler cannot be used to log in as them.

The database bootstrap (``post_init``) runs :func:`lookup_bootstrap_sql`; it sets the lookup role's
password from a precomputed SCRAM verifier (:func:`scram_verifier`), so the cleartext never reaches the
server, its logs or ``pg_stat_statements``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from ..reconciler.tsreconcile.desired import LOOKUP_ROLE_OPTIONS

LOOKUP_ROLE = "pgbouncer_auth"
"""The role PgBouncer logs in as to run ``auth_query`` (also the pooler's stats user for the exporter)."""
LOOKUP_SCHEMA = "pgbouncer"
LOOKUP_FUNCTION = f"{LOOKUP_SCHEMA}.get_auth"
AUTH_QUERY = f"SELECT usename, passwd FROM {LOOKUP_FUNCTION}($1)"
"""PgBouncer's ``auth_query``: the connecting user's name and SCRAM verifier."""

PASSWORD_KEY = "password"
USERLIST_KEY = "userlist.txt"
VERIFIER_KEY = "scram-verifier"
"""Keys of the lookup role's Secret: the cleartext (exporter), PgBouncer's auth file, the server's verifier."""
VERIFIER_FILE = f"{LOOKUP_ROLE}-scram-verifier"
"""File name of the verifier in the database bootstrap's secrets directory."""

SCRAM_ITERATIONS = 4096
"""PostgreSQL's default ``scram_iterations``."""
_SALT_LABEL = b"timescale-k8s pgbouncer lookup role salt"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_USERLIST_SAFE = re.compile(r'^[^"\s]+$')


@dataclass(frozen=True, kw_only=True)
class LookupCredentials:
    """Where the Pooler finds the lookup role's credentials (the database component creates them)."""

    role: str
    """Name of the lookup role (``LOOKUP_ROLE``)."""
    secret_name: pulumi.Output[str]
    """Secret with ``PASSWORD_KEY``, ``USERLIST_KEY`` and ``VERIFIER_KEY``."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def scram_verifier(password: str, *, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """The ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` verifier PostgreSQL stores (RFC 7677).

    ``password`` must be ASCII without SASLprep-relevant characters (the generated passwords are
    alphanumeric), so it is used as is.
    """
    if not password or not password.isascii() or not password.isprintable():
        raise ValueError("scram_verifier needs a non-empty printable ASCII password")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def stable_verifier(password: str) -> str:
    """:func:`scram_verifier` with a salt derived from the password, so every ``pulumi up`` renders the same
    Secret (a random salt would change it, and roll the database pods, on every run). The salt is unique
    per password, which is what SCRAM needs of it; it is not a secret."""
    salt = hmac.new(password.encode(), _SALT_LABEL, hashlib.sha256).digest()[:16]
    return scram_verifier(password, salt=salt)


def userlist_line(role: str, password: str) -> str:
    """One line of PgBouncer's ``auth_file``: ``"role" "password"`` (the lookup role logs in with it)."""
    for what, value in (("role", role), ("password", password)):
        if not _USERLIST_SAFE.match(value):
            raise ValueError(f"userlist {what} ({'***' if what == 'password' else value!r}) must not contain quotes or spaces")
    return f'"{role}" "{password}"\n'


def _identifier(value: str, what: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{what} ({value!r}) must be a lower-case PostgreSQL identifier")
    return value


def lookup_objects_sql(*, database: str, excluded_roles: Sequence[str], role: str = LOOKUP_ROLE) -> list[str]:
    """The lookup schema, function and grants as plain statements (no psql meta-commands), each idempotent.

    Run in ``database`` by a superuser (the function's owner): by the bootstrap (:func:`lookup_bootstrap_sql`)
    and by the role agent on a running cluster. ``excluded_roles`` are never returned by the function, on top
    of every superuser and replication role.
    """
    _identifier(database, "database")
    _identifier(role, "role")
    excluded = sorted({_identifier(name, "excluded role") for name in (*excluded_roles, role)})
    excluded_sql = ", ".join(f"'{name}'" for name in excluded)
    return [
        f"GRANT CONNECT ON DATABASE {database} TO {role}",
        f"CREATE SCHEMA IF NOT EXISTS {LOOKUP_SCHEMA}",
        f"REVOKE ALL ON SCHEMA {LOOKUP_SCHEMA} FROM PUBLIC",
        f"GRANT USAGE ON SCHEMA {LOOKUP_SCHEMA} TO {role}",
        f"""CREATE OR REPLACE FUNCTION {LOOKUP_FUNCTION}(p_usename text)
 RETURNS TABLE (usename name, passwd text)
 LANGUAGE sql STABLE SECURITY DEFINER
 SET search_path = pg_catalog, pg_temp
AS $lookup$
  SELECT s.usename, s.passwd FROM pg_catalog.pg_shadow AS s
   WHERE s.usename = p_usename AND NOT s.usesuper AND NOT s.userepl
     AND s.usename <> ALL (ARRAY[{excluded_sql}]::name[])
$lookup$""",
        f"REVOKE ALL ON FUNCTION {LOOKUP_FUNCTION}(text) FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION {LOOKUP_FUNCTION}(text) TO {role}",
    ]


def lookup_bootstrap_sql(*, database: str, verifier_path: str, excluded_roles: Sequence[str], role: str = LOOKUP_ROLE) -> str:
    """psql input that creates the lookup role, its password (from the verifier file) and the lookup function.

    Meant for the bootstrap's psql session, connected to ``database`` as a superuser (the function's
    owner); idempotent.
    """
    statements = lookup_objects_sql(database=database, excluded_roles=excluded_roles, role=role)
    if not verifier_path.startswith("/") or any(ch in verifier_path for ch in "`'\"\\ \n"):
        raise ValueError(f"verifier_path ({verifier_path!r}) must be an absolute path without quotes or spaces")
    objects = "".join(f"{statement};\n" for statement in statements)
    return f"""-- BEGIN pooler lookup role and auth_query function (components/pooler/auth.py)
\\set lookup_verifier `cat {verifier_path}`
SELECT format('CREATE ROLE %I {LOOKUP_ROLE_OPTIONS}', '{role}')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') \\gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', '{role}', :'lookup_verifier') \\gexec
\\unset lookup_verifier
{objects}-- END pooler lookup role and auth_query function
"""
