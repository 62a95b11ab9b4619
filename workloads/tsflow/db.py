"""Connections: DSN checks, libpq environment fallback, connect with backoff and jitter."""

from __future__ import annotations

import logging
import os
import random
import threading
import time

import psycopg
from psycopg import errors
from psycopg.conninfo import conninfo_to_dict, make_conninfo

log = logging.getLogger("tsflow.db")

# Errors after which the same statement may succeed on a new connection later.
RETRYABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,      # connection lost, server shutting down, admin terminate
    errors.UndefinedTable,         # schema not migrated yet
    errors.SerializationFailure,
    errors.DeadlockDetected,
)


class ConfigError(Exception):
    """A setting is unusable; the message is shown to the user as is."""


class StartupError(Exception):
    """The database could not be reached before the start-up deadline."""


PASSWORD_FILE_ENV = "TSFLOW_PASSWORD_FILE"
"""A file holding the password (e.g. a mounted Secret key): read at every connect, so a rotated password is
picked up, and never placed in the environment. A password in the DSN or PGPASSWORD wins over it."""


def check_dsn(dsn: str, what: str = "--dsn") -> str:
    """Validate a libpq conninfo/URI early so a typo fails with a clear message.

    libpq's parser quotes the text around the mistake, which may be the password; so its message is
    not shown, only the expected forms.
    """
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        raise ConfigError(
            f"{what} is not a valid libpq connection string; expected 'host=... dbname=... user=...' or "
            "'postgresql://user@host:port/dbname' (the parser's message is withheld: it would quote the string, "
            "password included)"
        ) from None
    return dsn


def check_password_file() -> None:
    """Fail at start-up, naming the variable and path, when TSFLOW_PASSWORD_FILE is set but unreadable or empty."""
    path = os.environ.get(PASSWORD_FILE_ENV)
    if path is None:
        return
    try:
        password = read_password_file(path)
    except OSError as exc:
        raise ConfigError(f"{PASSWORD_FILE_ENV} ({path!r}) cannot be read: {exc.strerror}") from None
    if not password:
        raise ConfigError(f"{PASSWORD_FILE_ENV} ({path!r}) is empty")


def read_password_file(path: str) -> str:
    """The file's first line, without its line break (Kubernetes Secret files have none; editors add one)."""
    with open(path, encoding="utf-8") as handle:
        return handle.readline().rstrip("\r\n")


def connect(dsn: str, app: str, connect_timeout: float, autocommit: bool = False) -> psycopg.Connection:
    """Open one connection. Unset parameters come from PGHOST, PGPORT, PGUSER, PGPASSWORD, ...,
    and the password from TSFLOW_PASSWORD_FILE when neither the DSN nor PGPASSWORD has one.

    Server-side prepared statements are off (``prepare_threshold=None``): behind a transaction-mode
    pooler (PgBouncer) the next transaction may run on another server connection, where a statement
    psycopg prepared earlier does not exist. tsflow's statements are cheap to plan; COPY dominates.
    """
    extra: dict[str, str] = {}
    path = os.environ.get(PASSWORD_FILE_ENV)
    if path and "password" not in conninfo_to_dict(dsn) and "PGPASSWORD" not in os.environ:
        extra["password"] = read_password_file(path)
    conninfo = make_conninfo(dsn, application_name=app, connect_timeout=max(1, round(connect_timeout)), **extra)
    return psycopg.connect(conninfo, autocommit=autocommit, prepare_threshold=None)


def backoff_delay(attempt: int, base: float = 0.1, cap: float = 30.0, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**attempt))."""
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return (rng or random).uniform(0.0, ceiling)


def connect_with_retry(
    dsn: str, app: str, connect_timeout: float, deadline_s: float, max_backoff: float,
    stop: threading.Event | None = None, autocommit: bool = False,
) -> psycopg.Connection:
    """Retry `connect` with backoff until it works or `deadline_s` seconds pass (StartupError)."""
    deadline = time.monotonic() + deadline_s
    attempt = 0
    while True:
        try:
            return connect(dsn, app, connect_timeout, autocommit=autocommit)
        except psycopg.OperationalError as exc:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                raise StartupError(f"cannot connect to the database: {one_line(exc)}") from None
            delay = min(backoff_delay(attempt, cap=max_backoff), remaining)
            log.warning("database not reachable, retrying", extra={"retry_in_s": round(delay, 3),
                                                                    "error": one_line(exc)})
            attempt += 1
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)


def safe_close(conn: psycopg.Connection | None) -> None:
    """Close a connection that may already be broken."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must never raise
            pass


def one_line(exc: BaseException) -> str:
    """An exception as one short line (libpq messages span several); a server's error keeps what the server
    said: ``SEVERITY SQLSTATE: message (detail: ...; hint: ...)``."""
    server = server_message(exc)
    return server if server is not None else _squeezed(str(exc)) or type(exc).__name__


def server_message(exc: BaseException) -> str | None:
    """The server's own report of a psycopg error (None when the server sent none: a client-side failure)."""
    diag = getattr(exc, "diag", None) if isinstance(exc, psycopg.Error) else None
    if diag is None or not diag.message_primary:
        return None
    head = " ".join(part for part in (diag.severity, diag.sqlstate) if part)
    notes = [f"{name}: {_squeezed(text)}" for name, text in (("detail", diag.message_detail), ("hint", diag.message_hint)) if text]
    message = f"{head}: {_squeezed(diag.message_primary)}" if head else _squeezed(diag.message_primary)
    return f"{message} ({'; '.join(notes)})" if notes else message


def _squeezed(text: str) -> str:
    """Every run of whitespace (line breaks and tabs of libpq's messages included) as one space."""
    return " ".join(text.split())
