"""PostgreSQL parameter values checked before any resource exists: type, unit, range, enum, and fit.

Patroni writes the parameters into postgresql.conf; a value PostgreSQL rejects (``shared_buffers: lots``,
``max_connections: 1000000``) or cannot honour (shared memory larger than the pod) keeps every member
from starting, long after ``pulumi up`` reported success. Pure functions, so each rule is unit-tested.

The table holds the parameters this component sets or users commonly tune, with PostgreSQL 17's
type, base unit and range (``pg_settings``: ``vartype``, ``unit``, ``min_val``, ``max_val``,
``enumvals``; a test compares it with a real server). Values follow PostgreSQL's own syntax: integers
and sizes/durations with an optional unit (``kB MB GB TB``, ``us ms s min h d``; a bare number is in the
parameter's base unit), booleans ``on/off/true/false/yes/no/1/0``, enums case-insensitively. Parameters
outside the table are checked against the catalog read from real servers (:func:`check_catalog`,
``components/timescaledb/catalog``): every name must exist for the image's major, every value must fit
the catalogued type, unit, enum and range.

Shared memory is estimated from a fit to ``postgres -C shared_memory_size`` of PostgreSQL 18 (see
:func:`shared_memory_bytes`); it must leave room for the processes in the container's memory.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass

KB = 1024
MB = 1024 * KB
INT_MAX = 2_147_483_647
MAX_BACKENDS = 262_143

_NUMBER_WITH_UNIT = re.compile(r"^\s*(?P<number>-?(?:\d+(?:\.\d*)?|\.\d+))\s*(?P<unit>[A-Za-z]*)\s*$")
_MEMORY_UNITS = {"B": 1, "kB": KB, "MB": MB, "GB": 1024 * MB, "TB": 1024 * 1024 * MB}
_TIME_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "min": 60_000.0, "h": 3_600_000.0, "d": 86_400_000.0}
_TRUE = {"on", "true", "yes", "1"}
_FALSE = {"off", "false", "no", "0"}

SHARED_MEMORY_SHARE = 0.8
"""Largest share of the container's memory PostgreSQL's shared memory may take (the rest: backends)."""
REQUIRED_PASSWORD_ENCRYPTION = "scram-sha-256"
TLS_FILE_PARAMETERS = frozenset({"ssl_cert_file", "ssl_key_file", "ssl_ca_file"})
"""Set by the component from the TLS Secret's mount; never overridden."""
TLS_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
"""PostgreSQL's names of the TLS protocol versions, oldest first."""
MIN_TLS_VERSION = "TLSv1.2"
"""The floor: TLS 1.0 and 1.1 are deprecated (RFC 8996). With TLS on, ``ssl_min_protocol_version`` is set to
it explicitly (``patroni_config.TLS_PARAMETERS``), and no override may go below it."""


@dataclass(frozen=True)
class Spec:
    """One parameter's type (``bool int real enum``), base unit and allowed range or values."""

    kind: str
    unit: str | None = None
    """Base unit of an ``int``: ``B kB 8kB MB`` (sizes) or ``ms s min`` (durations); None for plain numbers."""
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] = ()


def _int(low: int, high: int = INT_MAX, unit: str | None = None) -> Spec:
    return Spec("int", unit, low, high)


_BOOL = Spec("bool")

SPECS: Mapping[str, Spec] = {
    # memory (PostgreSQL 17 ranges, in the base unit)
    "shared_buffers": _int(16, 1_073_741_823, "8kB"),
    "effective_cache_size": _int(1, INT_MAX, "8kB"),
    "temp_buffers": _int(100, 1_073_741_823, "8kB"),
    "wal_buffers": _int(-1, MAX_BACKENDS, "8kB"),
    "work_mem": _int(64, INT_MAX, "kB"),
    "maintenance_work_mem": _int(64, INT_MAX, "kB"),
    "temp_file_limit": _int(-1, INT_MAX, "kB"),
    "log_temp_files": _int(-1, INT_MAX, "kB"),
    "min_wal_size": _int(2, INT_MAX, "MB"),
    "max_wal_size": _int(2, INT_MAX, "MB"),
    "max_slot_wal_keep_size": _int(-1, INT_MAX, "MB"),
    "wal_keep_size": _int(0, INT_MAX, "MB"),
    # durations
    "checkpoint_timeout": _int(30, 86_400, "s"),
    "autovacuum_naptime": _int(1, 2_147_483, "s"),
    "archive_timeout": _int(0, 1_073_741_823, "s"),
    "tcp_keepalives_idle": _int(0, INT_MAX, "s"),
    "statement_timeout": _int(0, INT_MAX, "ms"),
    "lock_timeout": _int(0, INT_MAX, "ms"),
    "idle_in_transaction_session_timeout": _int(0, INT_MAX, "ms"),
    "log_min_duration_statement": _int(-1, INT_MAX, "ms"),
    "bgwriter_delay": _int(10, 10_000, "ms"),
    "wal_writer_delay": _int(1, 10_000, "ms"),
    # counts
    "max_connections": _int(1, MAX_BACKENDS),
    "superuser_reserved_connections": _int(0, MAX_BACKENDS),
    "max_locks_per_transaction": _int(10),
    "max_prepared_transactions": _int(0, MAX_BACKENDS),
    "max_worker_processes": _int(0, MAX_BACKENDS),
    "max_parallel_workers": _int(0, 1024),
    "max_parallel_workers_per_gather": _int(0, 1024),
    "max_parallel_maintenance_workers": _int(0, 1024),
    "max_wal_senders": _int(0, MAX_BACKENDS),
    "max_replication_slots": _int(0, MAX_BACKENDS),
    "autovacuum_max_workers": _int(1, MAX_BACKENDS),
    "autovacuum_vacuum_cost_limit": _int(-1, 10_000),
    "vacuum_cost_limit": _int(1, 10_000),
    "default_statistics_target": _int(1, 10_000),
    "effective_io_concurrency": _int(0, 1000),
    "timescaledb.max_background_workers": _int(0, MAX_BACKENDS),
    # fractions and costs
    "checkpoint_completion_target": Spec("real", None, 0, 1),
    "random_page_cost": Spec("real", None, 0, 1.79769e308),
    "seq_page_cost": Spec("real", None, 0, 1.79769e308),
    "autovacuum_vacuum_scale_factor": Spec("real", None, 0, 100),
    "autovacuum_analyze_scale_factor": Spec("real", None, 0, 100),
    # switches
    **{name: _BOOL for name in (
        "ssl", "hot_standby_feedback", "wal_log_hints", "logging_collector", "log_checkpoints", "log_lock_waits",
        "track_commit_timestamp", "track_io_timing", "jit", "autovacuum", "log_disconnections", "fsync",
        "full_page_writes",
    )},
    # enums
    "password_encryption": Spec("enum", choices=("md5", "scram-sha-256")),
    "wal_level": Spec("enum", choices=("minimal", "replica", "logical")),
    "ssl_min_protocol_version": Spec("enum", choices=TLS_VERSIONS),
    "ssl_max_protocol_version": Spec("enum", choices=("", *TLS_VERSIONS)),
    "synchronous_commit": Spec("enum", choices=("local", "remote_write", "remote_apply", "on", "off")),
    "log_statement": Spec("enum", choices=("none", "ddl", "mod", "all")),
    "log_min_messages": Spec("enum", choices=(
        "debug5", "debug4", "debug3", "debug2", "debug1", "info", "notice", "warning", "error", "log", "fatal", "panic",
    )),
    "huge_pages": Spec("enum", choices=("off", "on", "try")),
    "archive_mode": Spec("enum", choices=("always", "on", "off")),
    "default_transaction_isolation": Spec("enum", choices=(
        "serializable", "repeatable read", "read committed", "read uncommitted",
    )),
}
"""Known parameters (PostgreSQL 17 and TimescaleDB)."""

DEFAULTS: Mapping[str, str] = {
    "shared_buffers": "128MB",
    "wal_buffers": "-1",
    "max_connections": "100",
    "max_locks_per_transaction": "64",
    "max_prepared_transactions": "0",
    "max_worker_processes": "8",
    "max_wal_senders": "10",
    "autovacuum_max_workers": "3",
}
"""PostgreSQL's defaults of the parameters the shared-memory estimate reads."""

_BASE_UNIT_BYTES = {"B": 1, "kB": KB, "8kB": 8 * KB, "MB": MB}
_BASE_UNIT_MS = {"ms": 1.0, "s": 1000.0, "min": 60_000.0}


def parse_value(name: str, value: str, spec: Spec) -> float | bool | str:
    """``value`` in ``spec``'s base unit (or the bool / canonical enum); ``ValueError`` says what is allowed."""
    text = str(value).strip()
    if spec.kind == "bool":
        lowered = text.lower()
        if lowered in _TRUE | _FALSE:
            return lowered in _TRUE
        raise ValueError("must be a boolean: on, off, true, false, yes, no, 1 or 0")
    if spec.kind == "enum":
        for choice in spec.choices:
            if text.lower() == choice.lower():
                return choice
        raise ValueError(f"must be one of {', '.join(repr(c) for c in spec.choices)}")
    match = _NUMBER_WITH_UNIT.match(text)
    if match is None:
        raise ValueError(_number_hint(spec))
    number, unit = float(match.group("number")), match.group("unit")
    if spec.kind == "real":
        if unit and spec.unit is None:
            raise ValueError(_number_hint(spec))
        return _in_range(_convert(number, unit, spec, text) if unit else number, spec, text)
    if unit:
        number = _convert(number, unit, spec, text)
    elif not number.is_integer():
        raise ValueError(_number_hint(spec))
    return _in_range(float(round(number)), spec, text)


def _convert(number: float, unit: str, spec: Spec, text: str) -> float:
    if spec.unit in _BASE_UNIT_BYTES and unit in _MEMORY_UNITS:
        return number * _MEMORY_UNITS[unit] / _BASE_UNIT_BYTES[spec.unit]
    if spec.unit in _BASE_UNIT_MS and unit in _TIME_UNITS:
        return number * _TIME_UNITS[unit] / _BASE_UNIT_MS[spec.unit]
    raise ValueError(f"has unit {unit!r}, which this parameter does not take; {_number_hint(spec)}")


def _number_hint(spec: Spec) -> str:
    if spec.unit in _BASE_UNIT_BYTES:
        return f"must be a size such as '256MB' or '4GB' (units B, kB, MB, GB, TB; a bare number counts {spec.unit})"
    if spec.unit in _BASE_UNIT_MS:
        return f"must be a duration such as '500ms', '30s' or '5min' (units us, ms, s, min, h, d; a bare number counts {spec.unit})"
    return "must be a number" if spec.kind == "real" else "must be a whole number"


def _in_range(number: float, spec: Spec, text: str) -> float:
    if (spec.low is not None and number < spec.low) or (spec.high is not None and number > spec.high):
        unit = f" x {spec.unit}" if spec.unit else ""
        low, high = _plain(spec.low), _plain(spec.high)
        raise ValueError(f"is outside the PostgreSQL range {low} .. {high}{unit}")
    return number


def _plain(bound: float | None) -> str:
    return f"{bound:g}" if bound is not None and not float(bound).is_integer() else str(int(bound or 0))


_VARTYPES = {"bool": "bool", "integer": "int", "real": "real", "enum": "enum", "string": "string"}


def catalog_spec(row: Mapping[str, object]) -> Spec:
    """The :class:`Spec` of one catalog row (``pg_settings`` columns)."""
    kind = _VARTYPES[str(row["vartype"])]
    bound = (lambda key: float(str(row[key])) if row.get(key) is not None else None)
    return Spec(kind, str(row["unit"]) if row.get("unit") else None, bound("min_val"), bound("max_val"),
                tuple(row.get("enumvals") or ()))  # type: ignore[arg-type]


def check_catalog(parameters: Mapping[str, str], known: Mapping[str, Mapping[str, object]], *, field_name: str) -> list[str]:
    """Every problem of ``parameters`` against the catalog ``known``: unknown names (with the nearest known
    name), read-only (``internal``) parameters, and values outside the type, unit, enum or range."""
    problems = []
    for name, value in parameters.items():
        row = known.get(name)
        if row is None:
            near = difflib.get_close_matches(name, list(known), n=1, cutoff=0.75)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            problems.append(f"{field_name}[{name!r}] is not a parameter of this PostgreSQL or TimescaleDB{hint} "
                            "PostgreSQL would refuse to start or ignore it")
        elif row.get("context") == "internal":
            problems.append(f"{field_name}[{name!r}] ({value!r}) is read-only (fixed when PostgreSQL was built); remove it")
        elif row.get("vartype") != "string":
            try:
                parse_value(name, value, catalog_spec(row))
            except ValueError as error:
                problems.append(f"{field_name}[{name!r}] ({value!r}) {error}")
    return problems


def check_values(parameters: Mapping[str, str], *, field_name: str, tls: bool) -> dict[str, float | bool | str]:
    """Parse every known parameter of ``parameters`` (user overrides) and apply the security rules.

    Raises ``ValueError`` naming ``field_name['<parameter>']`` and the value.
    """
    parsed: dict[str, float | bool | str] = {}
    for name, value in parameters.items():
        spec = SPECS.get(name)
        if name in TLS_FILE_PARAMETERS:
            raise ValueError(
                f"{field_name}[{name!r}] ({value!r}) is set by the component from tls_secret_name; do not override it"
            )
        if spec is None:
            continue
        try:
            parsed[name] = parse_value(name, value, spec)
        except ValueError as error:
            raise ValueError(f"{field_name}[{name!r}] ({value!r}) {error}") from None
    encryption = parsed.get("password_encryption")
    if encryption is not None and encryption != REQUIRED_PASSWORD_ENCRYPTION:
        raise ValueError(
            f"{field_name}['password_encryption'] ({parameters['password_encryption']!r}) must be "
            f"{REQUIRED_PASSWORD_ENCRYPTION!r}: every host rule authenticates with SCRAM, md5 hashes would lock clients out"
        )
    if parsed.get("ssl") is True and not tls:
        raise ValueError(
            f"{field_name}['ssl'] ({parameters['ssl']!r}) needs tls_secret_name: the server has no certificate without it"
        )
    if parsed.get("ssl") is False and tls:
        raise ValueError(
            f"{field_name}['ssl'] ({parameters['ssl']!r}) contradicts tls_secret_name: network clients must use TLS"
        )
    for name in ("ssl_min_protocol_version", "ssl_max_protocol_version"):
        version = parsed.get(name)
        if version and TLS_VERSIONS.index(str(version)) < TLS_VERSIONS.index(MIN_TLS_VERSION):
            raise ValueError(
                f"{field_name}[{name!r}] ({parameters[name]!r}) is below the TLS floor {MIN_TLS_VERSION!r}: "
                f"TLS 1.0 and 1.1 are deprecated (RFC 8996); use {MIN_TLS_VERSION!r} or 'TLSv1.3'"
            )
    floor, ceiling = parsed.get("ssl_min_protocol_version"), parsed.get("ssl_max_protocol_version")
    if floor and ceiling and TLS_VERSIONS.index(str(floor)) > TLS_VERSIONS.index(str(ceiling)):
        raise ValueError(
            f"{field_name}['ssl_min_protocol_version'] ({parameters['ssl_min_protocol_version']!r}) is above "
            f"{field_name}['ssl_max_protocol_version'] ({parameters['ssl_max_protocol_version']!r}): "
            "no protocol would be left and PostgreSQL would not start with TLS on"
        )
    if parsed.get("wal_level") == "minimal":
        raise ValueError(f"{field_name}['wal_level'] ({parameters['wal_level']!r}) must be 'replica' or 'logical': replicas stream WAL")
    return parsed


REPLICATION_HEADROOM: Mapping[str, int] = {"max_wal_senders": 2, "max_replication_slots": 1}
"""What a cluster needs beyond one WAL sender and one slot per streaming replica.

Every member may become the primary, and Patroni (``use_slots``) keeps a physical slot for each other
member, so a cluster of ``members`` pods streams to ``members - 1`` replicas through as many slots. On
top, one ``pg_basebackup -X stream`` cloning a member (a scale-up, or a member re-cloned after a failed
rewind) holds two WAL senders (the base backup and its WAL stream) and one temporary slot while it runs.
The database HPA adds one pod at a time and the StatefulSet starts them in order, so one clone is enough
headroom; a second concurrent clone would be refused by PostgreSQL and retried by Patroni. pg_rewind and
pgBackRest (archive-push, backups, restores) use ordinary connections, counted in ``max_connections``,
not these. Hence, for two members or more, ``max_wal_senders >= members + 1`` and
``max_replication_slots >= members``; a single member streams to nobody and clones nobody.
"""


def replication_needs(members: int) -> dict[str, int]:
    """Least ``max_wal_senders`` and ``max_replication_slots`` for a cluster of ``members`` pods."""
    return {name: members - 1 + extra if members > 1 else 0 for name, extra in REPLICATION_HEADROOM.items()}


def replication_capacity(parameters: Mapping[str, str]) -> int:
    """Most members ``parameters`` (which must set both keys) can serve: the inverse of :func:`replication_needs`."""
    return max(1, min(int(_number(name, parameters[name])) + 1 - extra for name, extra in REPLICATION_HEADROOM.items()))


def shared_memory_bytes(parameters: Mapping[str, str]) -> int:
    """Estimated size of PostgreSQL's main shared memory segment for ``parameters`` (defaults filled in).

    Fitted to ``postgres -C shared_memory_size`` (PostgreSQL 18, ``max_connections`` 25..100000,
    ``max_locks_per_transaction`` 64..1024, ``shared_buffers`` 128MB..1GB; within 3%):
    about 12MiB + 1.045 x shared_buffers + wal_buffers + per process slot (23kB + 392B per lock slot).
    """
    values = {name: _number(name, parameters.get(name, default)) for name, default in DEFAULTS.items()}
    buffers = values["shared_buffers"] * 8 * KB
    wal_buffers = values["wal_buffers"] * 8 * KB if values["wal_buffers"] >= 0 else min(buffers / 32, 16 * MB)
    slots = sum(values[name] for name in (
        "max_connections", "max_prepared_transactions", "max_worker_processes", "max_wal_senders", "autovacuum_max_workers",
    ))
    per_slot = 23 * KB + values["max_locks_per_transaction"] * 392
    return int(12 * MB + 1.045 * buffers + wal_buffers + slots * per_slot)


def _number(name: str, value: str) -> float:
    parsed = parse_value(name, value, SPECS[name])
    assert isinstance(parsed, float)
    return parsed


def check_fits_memory(parameters: Mapping[str, str], *, memory_bytes: int, field_name: str, overrides: Mapping[str, str]) -> None:
    """Raise unless the shared memory of ``parameters`` fits ``SHARED_MEMORY_SHARE`` of the container's memory."""
    needed = shared_memory_bytes(parameters)
    allowed = int(memory_bytes * SHARED_MEMORY_SHARE)
    if needed > allowed:
        involved = {name: parameters[name] for name in DEFAULTS if name in parameters}
        culprits = sorted(name for name in DEFAULTS if name in overrides) or sorted(involved)
        raise ValueError(
            f"{field_name} {', '.join(repr(n) for n in culprits)} need about {needed // MB}MiB of shared memory "
            f"({involved}), more than {int(SHARED_MEMORY_SHARE * 100)}% of the container memory "
            f"({memory_bytes // MB}MiB): PostgreSQL would not start; lower them or raise the memory"
        )
