"""Every rule for a :class:`~components.timescaledb.component.TimescaleDBArgs`, in one place.

:func:`check_args` runs all of them and raises one :class:`Problems` listing every problem found, each
naming its field path; it returns the warnings (overrides in use, a bridged catalog, a protected cluster
without TLS or backups) for the program to show. The rule groups:

* **shape** of each field (names, images, resources, storage, networks, TLS, timing);
* **catalog**: every ``postgresql_parameters`` name and value against the ``pg_settings`` catalog of the
  image's PostgreSQL major (``catalog/``), with the nearest name for typos, plus the security rules of
  :mod:`parameters` (SCRAM, TLS floor);
* **guarantees**: settings that void a promise the stack makes (:data:`GUARDED`), refused unless named in
  ``allow_unsafe``;
* **coherence** across fields: synchronous mode against members, workers, connection reserves, shared
  memory against the container, reserved database and role names; the backup section's own rules.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..pooler import auth as pooler_auth
from ..shared.images import check_pinned_image, check_timescaledb_image, postgres_major_of
from ..shared.quantity import byte_size
from ..shared.validate import check_range
from . import backup as br
from . import catalog
from . import parameters
from . import patroni_config as pc

if TYPE_CHECKING:
    from .component import StorageArgs, TimescaleDBArgs

MAX_NAME_LENGTH = 40
"""Longest component name: it is the StatefulSet/Patroni scope name (pods, ``<name>-leader`` ConfigMaps,
``data-<name>-<n>`` PVCs and the client label key must stay within Kubernetes' 63-character limits)."""
MAX_REPLICAS = 9
MAX_AUTOSCALED_MEMBERS = 100
"""Ceiling of ``max_replicas``: an HPA may grow a cluster past the declared members, never this far."""
"""Most Patroni members: every one streams from the primary (a wal sender and a slot each)."""
MIN_VOLUME_BYTES = 2**30
MIN_MEMORY_BYTES = 256 * 2**20
RESERVED_DATABASES = frozenset({"postgres", "template0", "template1"})
"""Databases every cluster has: the application's database must be another."""
BUILTIN_WORKER_MARGIN = 3
"""Worker slots beyond TimescaleDB's and the parallel workers (the TimescaleDB launcher and PostgreSQL's
own background workers; ``tuning`` adds the same three)."""

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_FIELD = "postgresql_parameters"


class Problems(ValueError):
    """Every problem of one set of arguments; ``str()`` lists them one a line."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class Guarded:
    """A parameter whose unsafe values void a promise of the stack."""

    promise: str
    """What breaks, as the error says it."""
    unsafe: Callable[[str, TimescaleDBArgs], bool]
    """Whether a value (as the user wrote it) is unsafe for these arguments."""


def _off(value: str) -> bool:
    return value.strip().lower() in parameters._FALSE


def _on(value: str) -> bool:
    return value.strip().lower() in parameters._TRUE


_DURABILITY = "durability: a crash can lose acknowledged commits or corrupt the database, and backups would restore the damage"
GUARDED: Mapping[str, Guarded] = {
    "fsync": Guarded(_DURABILITY, lambda v, a: _off(v)),
    "full_page_writes": Guarded(_DURABILITY + " (torn pages)", lambda v, a: _off(v)),
    "zero_damaged_pages": Guarded(_DURABILITY + " (damaged pages are silently emptied)", lambda v, a: _on(v)),
    "ignore_checksum_failure": Guarded(_DURABILITY + " (corruption goes unreported)", lambda v, a: _on(v)),
    "data_sync_retry": Guarded(_DURABILITY + " (a failed fsync is retried as if the data were safe)", lambda v, a: _on(v)),
    "synchronous_commit": Guarded(
        "no acknowledged commit lost: with synchronous_mode 'on' or 'strict' a commit is acknowledged only once a "
        "standby has it; 'off' and 'local' acknowledge it before",
        lambda v, a: a.synchronous_mode != "off" and v.strip().lower() in ("off", "local"),
    ),
    "synchronous_standby_names": Guarded(
        "replication managed by Patroni: Patroni sets it from synchronous_mode and the healthy members", lambda v, a: True,
    ),
    "archive_mode": Guarded("archiving managed by backup: pgBackRest's archive-push is configured from the backup section",
                            lambda v, a: a.backup is not None),
    "archive_command": Guarded("archiving managed by backup: pgBackRest's archive-push is configured from the backup section",
                               lambda v, a: a.backup is not None),
    "archive_library": Guarded("archiving managed by backup: a library replaces pgBackRest's 'archive_command'",
                               lambda v, a: a.backup is not None),
    "default_transaction_read_only": Guarded(
        "a usable application database: every transaction, migrations included, would be read-only", lambda v, a: _on(v),
    ),
    "timescaledb.disable_load": Guarded("a usable application database: TimescaleDB would never load", lambda v, a: _on(v)),
}
"""Parameters refused (with the promise named) when unsafe, unless named in ``allow_unsafe``."""


def check_args(name: str, args: TimescaleDBArgs) -> list[str]:
    """Run every rule; raise :class:`Problems` with all problems found, else return the warnings."""
    problems: list[str] = []
    warnings: list[str] = []
    for rule in (lambda: _check_name(name), lambda: _check_images(args), lambda: _check_resources(args),
                 lambda: _check_storage(args.storage), lambda: _check_members(args), lambda: _check_roles(args),
                 lambda: _check_network(args), lambda: _check_tls(args), lambda: _check_timing(args),
                 lambda: _check_source_passwords(args),
                 lambda: br.check_backup(args.backup) if args.backup is not None else None):
        _collect(rule, problems)
    overrides = _collect(lambda: pc.check_parameters(args.postgresql_parameters, field_name=_FIELD), problems)
    if overrides is not None:
        known = catalog.catalog(args.postgres_major) if isinstance(args.postgres_major, int) else None
        if known is None:
            problems.append(
                f"postgres_major ({args.postgres_major!r}) has no parameter catalog: catalogued majors are "
                f"{', '.join(map(str, catalog.catalogued_majors()))} (and those between); parameters cannot be checked"
            )
        else:
            if known.bridged_from:
                warnings.append(
                    f"postgres_major ({args.postgres_major}) has no catalog of its own: {_FIELD} are checked against "
                    f"PostgreSQL {known.bridged_from[0]} and {known.bridged_from[1]}"
                )
            catalog_problems = parameters.check_catalog(overrides, known.parameters, field_name=_FIELD)
            problems += catalog_problems
            problems += _guarantees(args, overrides, warnings)
            if not catalog_problems:  # the rules below parse values: only once each is known to parse
                _collect(lambda: parameters.check_values(overrides, field_name=_FIELD,
                                                         tls=args.tls_secret_name is not None), problems)
                problems += _coherence(args, overrides, known.parameters)
    problems += _unprotected(args, warnings)
    if problems:
        raise Problems(problems)
    return warnings


def _check_source_passwords(args: TimescaleDBArgs) -> None:
    """A standby cluster's data holds its source's roles: without the source's passwords its replicas cannot
    authenticate to the standby leader, nor clients after a promotion."""
    standby = args.backup.standby if args.backup is not None else None
    if standby is None:
        return  # given passwords without a standby: a promoted standby, whose data still holds its source's roles
    if args.source_passwords is None and not standby.source_uses_our_passwords:
        raise ValueError(
            "source_passwords: required with backup.standby: the standby's data holds the source's roles and passwords, "
            "so its replicas and clients must use the source's (its role_passwords output); when the source took its "
            "passwords from this cluster (a failback), set backup.standby.source_uses_our_passwords instead"
        )
    if args.source_passwords is not None and standby.source_uses_our_passwords:
        raise ValueError("source_passwords: set with backup.standby.source_uses_our_passwords; choose one")


def _collect(rule: Callable[[], object], problems: list[str]) -> object:
    try:
        return rule()
    except ValueError as error:
        problems.extend(error.problems if isinstance(error, Problems) else [str(error)])
        return None


def _check_name(name: str) -> None:
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _DNS_LABEL.match(name):
        raise ValueError(
            f"name ({name!r}) must be a lowercase RFC 1123 label starting with a letter, at most {MAX_NAME_LENGTH} characters"
        )


def _check_images(args: TimescaleDBArgs) -> None:
    check_timescaledb_image(args.image, field="image")
    check_range("postgres_major", args.postgres_major, 14, 99)
    image_major = postgres_major_of(args.image)
    if image_major is not None and image_major != args.postgres_major:
        raise ValueError(
            f"image ({args.image!r}) is PostgreSQL {image_major} but the cluster's data directory is PostgreSQL "
            f"{args.postgres_major} (postgres_major): in-place major upgrades are not supported; keep a "
            f"pg{args.postgres_major} image, or migrate to a new cluster (README: Upgrades)"
        )
    check_pinned_image(args.exporter_image, field="exporter_image")


def _check_resources(args: TimescaleDBArgs) -> None:
    if isinstance(args.namespace, str) and (len(args.namespace) > 63 or not _DNS_LABEL.match(args.namespace)):
        raise ValueError(f"namespace ({args.namespace!r}) must be a lowercase RFC 1123 label")
    if isinstance(args.replicas, bool) or not isinstance(args.replicas, int) or not 1 <= args.replicas <= MAX_REPLICAS:
        raise ValueError(f"replicas ({args.replicas!r}) must be an integer from 1 to {MAX_REPLICAS}")
    args.resources.check("resources")
    if args.resources.memory_bytes < MIN_MEMORY_BYTES:
        memory = args.resources.memory_limit or args.resources.memory_request
        raise ValueError(f"resources memory ({memory}) must be at least 256Mi to run PostgreSQL with TimescaleDB")
    args.exporter_resources.check("exporter_resources")
    args.role_agent_resources.check("role_agent_resources")
    if args.anti_affinity not in ("preferred", "required"):
        raise ValueError(f"anti_affinity ({args.anti_affinity!r}) must be 'preferred' or 'required'")
    grace = args.termination_grace_seconds
    if isinstance(grace, bool) or not isinstance(grace, int) or not 10 <= grace <= 3600:
        raise ValueError(f"termination_grace_seconds ({grace!r}) must be an integer between 10 and 3600")


def _check_members(args: TimescaleDBArgs) -> None:
    """max_replicas names every pod Patroni's Role may patch: a member beyond it could not publish itself."""
    most = args.max_replicas
    if most is None:
        if args.autoscaled:
            raise ValueError(
                "max_replicas is required with autoscaled: set it to the HPA's maxReplicas, so Patroni's Role "
                "may patch every member the autoscaler can start (a member it cannot patch is invisible to Patroni)"
            )
        return
    floor = args.replicas if isinstance(args.replicas, int) and not isinstance(args.replicas, bool) else 1
    if isinstance(most, bool) or not isinstance(most, int) or not floor <= most <= MAX_AUTOSCALED_MEMBERS:
        raise ValueError(f"max_replicas ({most!r}) must be an integer from replicas ({floor}) to {MAX_AUTOSCALED_MEMBERS}")


def _check_storage(storage: StorageArgs) -> None:
    for field_name in ("data_size", "wal_size"):
        value = getattr(storage, field_name)
        if value is not None and byte_size(value, field=f"storage.{field_name}") < MIN_VOLUME_BYTES:
            raise ValueError(f"storage.{field_name} ({value}) must be at least 1Gi")
    if storage.storage_class is not None and (
        len(storage.storage_class) > 253 or not _DNS_SUBDOMAIN.match(storage.storage_class)
    ):
        raise ValueError(f"storage.storage_class ({storage.storage_class!r}) must be a StorageClass name")


def _check_roles(args: TimescaleDBArgs) -> None:
    problems: list[str] = []
    for field_name in ("database", "app_user", "reader_user"):
        _collect(lambda: pc.check_identifier(getattr(args, field_name), field_name=field_name), problems)
    if args.database in RESERVED_DATABASES:
        problems.append(f"database ({args.database!r}) is a database every cluster has; the application needs its own "
                        f"(avoid {sorted(RESERVED_DATABASES)})")
    if args.app_user == args.reader_user:
        problems.append(f"reader_user ({args.reader_user!r}) must differ from app_user ({args.app_user!r})")
    for field_name in ("app_user", "reader_user"):
        role = getattr(args, field_name)
        if args.pooler_lookup and role == pooler_auth.LOOKUP_ROLE:
            problems.append(f"{field_name} ({pooler_auth.LOOKUP_ROLE!r}) is the pooler's lookup role; pick another name")
        elif role in pc.RESERVED_ROLES:
            problems.append(f"{field_name} ({role!r}) is reserved for the cluster; avoid {sorted(pc.RESERVED_ROLES)}")
        elif isinstance(role, str) and role.startswith("pg_"):
            problems.append(f"{field_name} ({role!r}): names starting with 'pg_' are reserved by PostgreSQL")
    if problems:
        raise Problems(problems)


def check_pod_network_cidrs(cidrs: Sequence[str]) -> None:
    """Non-empty, each a network address in CIDR form (IPv4 or IPv6), none admitting every address."""
    if isinstance(cidrs, str) or not isinstance(cidrs, Sequence) or not cidrs:
        raise ValueError(f"pod_network_cidrs ({cidrs!r}) must be a non-empty list of CIDRs")
    for cidr in cidrs:
        try:
            network = ipaddress.ip_network(cidr) if isinstance(cidr, str) and "/" in cidr else None
        except ValueError as error:
            raise ValueError(f"pod_network_cidrs has an invalid network ({cidr!r}): {error}") from None
        if network is None:
            raise ValueError(f"pod_network_cidrs has an invalid network ({cidr!r}): use CIDR notation, e.g. 10.244.0.0/16 or fd00:10:244::/56")
        if network.prefixlen == 0:
            raise ValueError(f"pod_network_cidrs has ({cidr!r}), which admits replication from every address; name the pod networks")
    if len(set(cidrs)) != len(cidrs):
        raise ValueError(f"pod_network_cidrs ({list(cidrs)!r}) lists a network twice")


def _check_network(args: TimescaleDBArgs) -> None:
    if args.monitoring_namespace is not None and not _DNS_LABEL.match(args.monitoring_namespace):
        raise ValueError(f"monitoring_namespace ({args.monitoring_namespace!r}) must be a namespace name")
    if isinstance(args.client_namespaces, str) or not all(
        isinstance(ns, str) and _DNS_LABEL.match(ns) for ns in args.client_namespaces
    ):
        raise ValueError(f"client_namespaces ({args.client_namespaces!r}) must be a list of namespace names")
    check_pod_network_cidrs(args.pod_network_cidrs)


def _check_tls(args: TimescaleDBArgs) -> None:
    if args.tls_secret_name is not None and (
        len(args.tls_secret_name) > 253 or not _DNS_SUBDOMAIN.match(args.tls_secret_name)
    ):
        raise ValueError(f"tls_secret_name ({args.tls_secret_name!r}) must be a Secret name")
    if args.tls_issuer is not None:
        if args.tls_secret_name is None:
            raise ValueError(f"tls_issuer ({args.tls_issuer.name!r}) needs tls_secret_name: the Secret the Certificate writes")
        if not _DNS_SUBDOMAIN.match(args.tls_issuer.name) or args.tls_issuer.kind not in ("Issuer", "ClusterIssuer"):
            raise ValueError(
                f"tls_issuer ({args.tls_issuer.name!r}, {args.tls_issuer.kind!r}) must name an Issuer or ClusterIssuer"
            )


def _check_timing(args: TimescaleDBArgs) -> None:
    pc.check_timing(args.patroni_timing, field_name="patroni_timing")
    if args.synchronous_mode not in pc.SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous_mode ({args.synchronous_mode!r}) must be one of {', '.join(pc.SYNCHRONOUS_MODES)}")
    if args.synchronous_mode == "strict" and args.replicas == 1:
        raise ValueError(
            "synchronous_mode ('strict') needs replicas >= 2 (replicas is 1): a single member never has a synchronous "
            "standby, so with strict no commit would ever be acknowledged; use 'on', or add a replica"
        )


def _guarantees(args: TimescaleDBArgs, overrides: Mapping[str, str], warnings: list[str]) -> list[str]:
    problems = []
    allowed = set(args.allow_unsafe)
    for name in sorted(allowed - set(GUARDED)):
        problems.append(f"allow_unsafe ({name!r}) is not a guarded parameter; guarded: {', '.join(sorted(GUARDED))}")
    for name, value in overrides.items():
        guarded = GUARDED.get(name)
        if guarded is None or not guarded.unsafe(value, args):
            continue
        if name in allowed:
            warnings.append(f"{_FIELD}[{name!r}] ({value!r}) voids {guarded.promise}; allowed by allow_unsafe")
        else:
            problems.append(f"{_FIELD}[{name!r}] ({value!r}) voids {guarded.promise}; "
                            f"to accept that, add {name!r} to allow_unsafe")
    return problems


def _coherence(args: TimescaleDBArgs, overrides: Mapping[str, str], known: Mapping[str, Mapping[str, object]]) -> list[str]:
    """Rules across parameters and fields, on the merged parameters (defaults from the catalog)."""
    from .component import postgresql_parameters  # the merge lives with the component

    merged = postgresql_parameters(args)
    problems: list[str] = []

    def number(name: str) -> int:
        value = merged.get(name, str(known[name]["boot_val"]))
        return int(parameters.parse_value(name, value, parameters.catalog_spec(known[name])))

    def blame(*names: str) -> str:
        named = [n for n in names if n in overrides] or list(names)
        return ", ".join(f"{_FIELD}[{n!r}] ({merged.get(n, known[n]['boot_val'])!r})" for n in named)

    needed = number("timescaledb.max_background_workers") + number("max_parallel_workers") + BUILTIN_WORKER_MARGIN
    if "max_logical_replication_workers" in overrides:
        needed += number("max_logical_replication_workers")
    if number("max_worker_processes") < needed:
        problems.append(
            f"{blame('max_worker_processes', 'timescaledb.max_background_workers', 'max_parallel_workers')}: "
            f"'max_worker_processes' ({number('max_worker_processes')}) must be at least {needed} (TimescaleDB's background "
            f"workers + parallel workers{' + logical replication workers' if 'max_logical_replication_workers' in overrides else ''}"
            f" + {BUILTIN_WORKER_MARGIN}): otherwise TimescaleDB's jobs (compression, retention, continuous aggregate refresh) stop being scheduled"
        )
    reserved = reserved_connections(args)
    if reserved >= number("max_connections"):
        problems.append(
            f"{blame('superuser_reserved_connections', 'max_connections')}: the reserved connections ({reserved}) must be "
            f"fewer than 'max_connections' ({number('max_connections')}), or PostgreSQL does not start and no application can connect"
        )
    if not problems:
        _collect(lambda: parameters.check_fits_memory(merged, memory_bytes=args.resources.memory_bytes,
                                                      field_name=_FIELD, overrides=overrides), problems)
    return problems


def reserved_connections(args: TimescaleDBArgs) -> int:
    """Connection slots kept for superusers (``superuser_reserved_connections``, plus ``reserved_connections``
    where the major has it): the application's and the pooler's roles can never use them."""
    from .component import postgresql_parameters  # the merge lives with the component

    merged = postgresql_parameters(args)
    known = catalog.catalog(args.postgres_major)
    total = 0
    for name in ("superuser_reserved_connections", "reserved_connections"):
        entry = known.parameters.get(name) if known is not None else None
        if entry is not None:
            value = merged.get(name, str(entry["boot_val"]))
            total += int(parameters.parse_value(name, value, parameters.catalog_spec(entry)))
    return total


def _unprotected(args: TimescaleDBArgs, warnings: list[str]) -> list[str]:
    """Warnings (never errors) for a cluster whose data matters that lacks protection, TLS or backups.

    A protected cluster is one whose data matters; so is one with backups. The backup section is the
    stack's top-level ``backup``, not a field of the database section, hence its spelled-out key."""
    if args.protect:
        if args.tls_secret_name is None:
            warnings.append("tls_secret_name is not set on a protected cluster: clients and replicas talk in clear text")
        if args.backup is None:
            warnings.append("protect is true but the stack has no backup section (timescale-k8s:backup): "
                            "no WAL archive and no backups, nothing to restore")
    elif args.backup is not None:
        warnings.append("protect is false on a cluster with backups: a `pulumi destroy` or a replacement deletes its "
                        "data volumes and their claims; set it to true where the data matters")
    return []
