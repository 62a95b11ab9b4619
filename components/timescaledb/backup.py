"""pgBackRest for the TimescaleDB component: WAL archiving, scheduled backups, restore and standby clusters.

Pure builders: ``pgbackrest.conf``, the archive and restore commands, and the Patroni sections that use
them. The component renders them into its ConfigMap; the real-process tests render them and run them.

Facts this relies on (pgBackRest 2.x user guide and command reference; Patroni 4 docs
``replica_bootstrap.rst`` and ``patroni/postgresql/bootstrap.py``):

* ``archive_command = pgbackrest --stanza=S archive-push %p`` with ``archive-async=y``: PostgreSQL's
  call returns once a background process has pushed the segment (the spool only holds status files),
  so archiving is fast and still safe. ``archive-push-queue-max`` caps WAL kept while the repository is
  unreachable: beyond it pgBackRest drops WAL (breaking PITR until the next backup) instead of filling
  the disk and stopping the primary.
* ``restore_command = pgbackrest --stanza=S archive-get %f "%p"`` in Patroni's ``recovery_conf`` lets a
  replica that fell behind its slot catch up from the repository.
* Patroni custom bootstrap (``bootstrap.method``) runs a command that fills the data directory, then
  writes ``recovery_conf`` itself (and strips recovery settings pgBackRest might write to
  ``postgresql.auto.conf``), starts PostgreSQL, waits for recovery to reach the target and promotes.
  The command therefore restores with ``--type=none``; the target lives in ``recovery_conf``.
* A standby cluster is ``bootstrap.dcs.standby_cluster``: its leader replays WAL from
  ``restore_command`` (and streams from ``host`` when given); members are created with the
  ``pgbackrest`` replica method. Removing ``standby_cluster`` from the DCS promotes it.
* S3 credentials: the two keys of the user's Secret are mounted as files (a projected volume, mode
  0440) and each container's start command exports them as ``PGBACKREST_REPO1_S3_KEY`` and
  ``PGBACKREST_REPO1_S3_KEY_SECRET`` right before it execs its program (Patroni, or the backup agent), as
  it does Patroni's own passwords; no secret is in the pod spec's env or in ``pgbackrest.conf``.
  pgBackRest reads any option from ``PGBACKREST_<OPTION>`` (command reference, "Any option may be set in
  an environment variable"; ``src/config/parse.c`` phase 2), and refuses these secure options on the
  command line, so its own workers (``process-max``, the async archiver) read them from the env they
  inherit. Every pgBackRest process in the pod descends from an exporting process: the agent's
  subprocesses inherit its env; Patroni starts PostgreSQL with its env minus ``PATRONI_*`` and
  ``KUBERNETES_*`` only (``patroni/postgresql/postmaster.py``, ``PostmasterProcess.start``), so
  ``archive_command`` and ``restore_command`` get them, and the custom bootstrap and replica-creation
  commands inherit Patroni's env (``bootstrap.py``: ``cancellable.call`` without ``env``, or
  ``write_pgpass``'s copy of ``os.environ``).

  Why not a pgBackRest option: none reads a key from a file (``repo1-s3-key-type`` ``auto``/``web-id``
  are for IAM roles, not a static key pair). ``config-include-path`` reads ini fragments, and the Secret
  holds bare keys, so the start command would have to write ``repo1-s3-key=...`` into a second file on a
  writable volume: another copy of the secret, shared by two containers that start at once, and a value
  with a newline would add options of its own. The export has none of that. Its cost: a ``pgbackrest``
  started by ``kubectl exec`` does not descend from the start command, so it must export the keys itself
  (see :func:`credential_options`). The keys are read at container start, as ``secretKeyRef`` env was:
  a rotated key pair takes effect when the pods restart.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..shared.names import DNS_SUBDOMAIN
from ..shared.types import Resources
from . import patroni_config as pc
from .backup_agent import CronError, max_interval_seconds, parse_cron

CONFIG_DIR = "/etc/pgbackrest"
CONFIG_FILE = "pgbackrest.conf"
CONFIG_KEY = CONFIG_FILE
AGENT_FILE = "backup_agent.py"
AGENT_KEY = AGENT_FILE
AGENT_PORT = 9188
AGENT_PORT_NAME = "backup-metrics"
SPOOL_DIR = f"{pc.DATA_MOUNT}/pgbackrest-spool"
"""Async archive spool on the data volume (it survives restarts; the emptyDir /tmp is small)."""
LOCK_DIR = "/tmp/pgbackrest"
"""Shared by the database and agent containers (one /tmp volume), so their pgBackRest locks see each other."""
ACCESS_KEY_ID_KEY = "AWS_ACCESS_KEY_ID"
SECRET_ACCESS_KEY_KEY = "AWS_SECRET_ACCESS_KEY"
"""Keys the user's credentials Secret must hold."""
_KEY_OPTIONS = (("s3-key", ACCESS_KEY_ID_KEY), ("s3-key-secret", SECRET_ACCESS_KEY_KEY))
"""Each repository's key options (after ``repoN-``) and the Secret key each is read from."""


def credential_options(repositories: int = 1) -> dict[str, str]:
    """pgBackRest's S3 key options of the first ``repositories`` repositories and the credentials Secret key each
    is read from. The pod mounts each key as a file named after its option and exports it as :func:`option_env` of
    the option, so a manual run in a member is ``bash -c 'export PGBACKREST_REPO1_S3_KEY="$(< DIR/repo1-s3-key)"
    PGBACKREST_REPO1_S3_KEY_SECRET="$(< DIR/repo1-s3-key-secret)"; pgbackrest ...'`` (``DIR``:
    ``pod.BACKUP_SECRETS_DIR``; with a secondary repository, ``repo2-`` too)."""
    return {f"repo{index}-{option}": key for index in range(1, repositories + 1) for option, key in _KEY_OPTIONS}


def credential_files(secrets: Sequence[str]) -> list[tuple[str, str, str]]:
    """(Secret, key, file named after the option) of each repository's key pair, ``secrets`` in repository order."""
    return [(secret, key, f"repo{index}-{option}") for index, secret in enumerate(secrets, start=1)
            for option, key in _KEY_OPTIONS]


BOOTSTRAP_METHOD = "pgbackrest"
ARCHIVE_TIMEOUT_S = 60
"""PostgreSQL's ``archive_timeout``: a WAL segment is closed and archived at least this often while anything is
written, so an archive-only standby cluster (no ``standby.host``) loses at most about this much of prod's writes when
prod is lost (RPO), plus the asynchronous push (``bench/dr.py`` measures both). The cost is one 16 MiB segment a
minute on an almost idle server, compressed to a few KiB in the repository."""
IO_TIMEOUT_S = 10
"""pgBackRest's ``io-timeout``: how long one request may make no progress, and how long a connection to an
unreachable repository is retried before the next repository is tried. pgBackRest 2.45's default (60 s) made one
WAL fetch from repo2 with repo1 refusing connections take 240.6 s (about eight retried requests; 40.8 s at 5 s):
a standby falling back to its second repository would replay one segment every four minutes."""
FALLBACK_REQUESTS = 8
"""Requests a WAL fetch makes to an unreachable first repository before it uses the second (measured as above):
a fallback fetch costs up to ``FALLBACK_REQUESTS * IO_TIMEOUT_S``."""

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
_STANZA = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_REPO_PATH = re.compile(r"^/[A-Za-z0-9._/-]*$")
_REGION = re.compile(r"^[a-z0-9-]{1,32}$")
_LSN = re.compile(r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$")
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([+-]\d{2}(:?\d{2})?|Z)$")
_RESTORE_POINT = re.compile(r"^[A-Za-z0-9_.:-]{1,63}$")


@dataclass(frozen=True, kw_only=True)
class RepositoryArgs:
    """An S3-compatible bucket holding the stanza's WAL archive and backups."""

    bucket: str
    """Bucket name; required."""
    endpoint: str
    """Host (optionally ``host:port``) of the S3 API, e.g. ``s3.eu-west-1.amazonaws.com``; required."""
    region: str
    """Region the bucket lives in (signing); required."""
    credentials_secret: str
    """Secret in the namespace with ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY``; required."""
    path: str = "/timescaledb"
    """Path inside the bucket; default ``/timescaledb``. Stanzas are directories below it."""
    uri_style: Literal["host", "path"] = "host"
    """``host`` (virtual-hosted, AWS) or ``path`` addressing (MinIO, most on-premises stores); default ``host``."""
    verify_tls: bool = True
    """Verify the endpoint's certificate; default True."""


@dataclass(frozen=True, kw_only=True)
class RestoreTarget:
    """Where recovery stops: exactly one of ``latest``, ``time``, ``lsn`` or ``name``."""

    latest: bool = False
    """Replay every archived WAL; default False."""
    time: str | None = None
    """Timestamp with zone, e.g. ``2026-11-25 09:30:00+00``; default None."""
    lsn: str | None = None
    """WAL position, e.g. ``0/3000060``; default None."""
    name: str | None = None
    """A restore point made with ``pg_create_restore_point``; default None."""


@dataclass(frozen=True, kw_only=True)
class SourceArgs:
    """The stanza another cluster archived to, in this cluster's repositories (both, with a secondary one)."""

    stanza: str
    """The source cluster's stanza; required. Never the same stanza and path as this cluster's own."""
    path: str | None = None
    """The source's path in every repository; default None: each repository's own ``path``."""


@dataclass(frozen=True, kw_only=True)
class RestoreArgs:
    """Create the cluster from a backup (Patroni custom bootstrap); only acts when the cluster is new."""

    source: SourceArgs
    """Stanza to restore from; required."""
    target: RestoreTarget
    """Where recovery stops; required."""


@dataclass(frozen=True, kw_only=True)
class StandbyArgs:
    """Run as a standby cluster replaying the source's archive (and streaming from ``host`` if given)."""

    source: SourceArgs
    """Stanza to replay; required."""
    host: str | None = None
    """Reachable primary of the source cluster to stream from; default None: archive only."""
    port: int = pc.POSTGRES_PORT
    """Port of ``host``; default 5432."""
    source_uses_our_passwords: bool = False
    """The source took its role passwords from this cluster (a failback: the old primary rebuilt as a standby of
    the cluster promoted with its passwords), so this cluster's own are the source's and ``source_passwords`` is
    not needed; default False."""


@dataclass(frozen=True, kw_only=True)
class BackupArgs:
    """WAL archiving and scheduled backups to an S3-compatible repository."""

    repository: RepositoryArgs
    """Where backups go (pgBackRest's ``repo1``); required."""
    stanza: str
    """This cluster's stanza (its directory in the repository); required (the stack uses the cluster name)."""
    full_schedule: str = "0 1 * * 0"
    """Cron schedule (UTC) of full backups; default Sundays 01:00."""
    diff_schedule: str | None = "0 1 * * 1-6"
    """Cron schedule (UTC) of differential backups; default 01:00 Monday to Saturday; None: none."""
    retention_full: int = 2
    """Full backups kept (older ones and their WAL expire); default 2."""
    retention_diff: int = 6
    """Differential backups kept; default 6."""
    restore: RestoreArgs | None = None
    """Bootstrap a new cluster from a backup; default None (initdb)."""
    standby: StandbyArgs | None = None
    """Run as a standby cluster; default None."""
    secondary_repository: RepositoryArgs | None = None
    """A second bucket, typically in another region (``repo2``): every WAL segment is pushed to both, every scheduled
    backup is taken into both, and WAL fetches (replicas, restores, a standby cluster's replay) fall back to it when
    ``repository`` is unreachable. A restore or standby ``source`` lies at the same path in both. Default None."""
    process_max: int = 2
    """Parallel processes of a backup or restore; default 2."""
    agent_resources: Resources = field(
        default_factory=lambda: Resources(cpu_request="100m", memory_request="256Mi", memory_limit="512Mi")
    )
    """Backup agent sidecar resources (pgBackRest compresses in it); default 100m / 256Mi (limit 512Mi)."""


def repositories(args: BackupArgs) -> tuple[RepositoryArgs, ...]:
    """The repositories in pgBackRest's priority order: ``repo1``, then ``repo2`` if any."""
    return (args.repository, *([args.secondary_repository] if args.secondary_repository is not None else []))


def check_backup(args: BackupArgs, field_name: str = "backup") -> None:
    """Raise ``ValueError`` naming the field and the bad value."""
    _check_repository(args.repository, f"{field_name}.repository")
    secondary = args.secondary_repository
    if secondary is not None:
        _check_repository(secondary, f"{field_name}.secondary_repository")
        if (secondary.bucket, secondary.endpoint, secondary.path) == (
                args.repository.bucket, args.repository.endpoint, args.repository.path):
            raise ValueError(
                f"{field_name}.secondary_repository is the same bucket and path as {field_name}.repository: a second"
                " copy must live elsewhere (another bucket, ideally in another region)"
            )
    _check_stanza(args.stanza, f"{field_name}.stanza")
    _check_schedules_and_limits(args, field_name)
    _check_restore_and_standby(args, field_name)


def _check_repository(repo: RepositoryArgs, f: str) -> None:
    if not _BUCKET.match(repo.bucket) or ".." in repo.bucket:
        raise ValueError(f"{f}.bucket ({repo.bucket!r}) must be an S3 bucket name (3-63 lower-case letters, digits, '.', '-')")
    host, _, port = repo.endpoint.partition(":")
    if "://" in repo.endpoint or not _HOST.match(host) or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        raise ValueError(f"{f}.endpoint ({repo.endpoint!r}) must be a host name with an optional :port, without a scheme")
    if not _REGION.match(repo.region):
        raise ValueError(f"{f}.region ({repo.region!r}) must be a region name such as 'us-east-1'")
    if not DNS_SUBDOMAIN.match(repo.credentials_secret):
        raise ValueError(f"{f}.credentials_secret ({repo.credentials_secret!r}) must be a Secret name")
    _check_path(repo.path, f"{f}.path")
    if repo.uri_style not in ("host", "path"):
        raise ValueError(f"{f}.uri_style ({repo.uri_style!r}) must be 'host' or 'path'")


def _check_schedules_and_limits(args: BackupArgs, field_name: str) -> None:
    for key, schedule in (("full_schedule", args.full_schedule), ("diff_schedule", args.diff_schedule)):
        if schedule is not None:
            try:
                parse_cron(schedule)
            except CronError as error:
                raise ValueError(f"{field_name}.{key} ({schedule!r}) {error}") from None
    args.agent_resources.check(f"{field_name}.agent_resources")
    for key in ("retention_full", "retention_diff", "process_max"):
        value = getattr(args, key)
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 9999:
            raise ValueError(f"{field_name}.{key} ({value!r}) must be a whole number >= 1")


def _check_restore_and_standby(args: BackupArgs, field_name: str) -> None:
    if args.restore is not None and args.standby is not None:
        raise ValueError(f"{field_name}: restore and standby cannot both be set (a standby cluster replays, a restore promotes)")
    for key, block in (("restore", args.restore), ("standby", args.standby)):
        if block is not None:
            _check_source(block.source, args, f"{field_name}.{key}.source")
    if args.restore is not None:
        check_target(args.restore.target, f"{field_name}.restore.target")
    if args.standby is not None and args.standby.host is not None and not _HOST.match(args.standby.host):
        raise ValueError(f"{field_name}.standby.host ({args.standby.host!r}) must be a host name or IP address")


def _check_path(path: str, where: str) -> None:
    if not _REPO_PATH.match(path) or "//" in path or "/../" in f"{path}/":
        raise ValueError(f"{where} ({path!r}) must be an absolute path such as '/timescaledb'")


def _check_stanza(stanza: str, where: str) -> None:
    if not isinstance(stanza, str) or not _STANZA.match(stanza):
        raise ValueError(f"{where} ({stanza!r}) must be lower-case letters, digits, '-' or '_' (at most 63)")


def _check_source(source: SourceArgs, args: BackupArgs, where: str) -> None:
    _check_stanza(source.stanza, f"{where}.stanza")
    if source.path is not None:
        _check_path(source.path, f"{where}.path")
    if any((source.stanza, source_path(source, repo)) == (args.stanza, repo.path) for repo in repositories(args)):
        raise ValueError(
            f"{where}.stanza ({source.stanza!r}) is this cluster's own stanza at the same path: the restored or"
            " standby cluster would archive over its source. Give this cluster another stanza or path"
        )


def check_target(target: RestoreTarget, where: str = "target") -> None:
    """Exactly one target, each in PostgreSQL's format."""
    given = [k for k in ("time", "lsn", "name") if getattr(target, k) is not None] + (["latest"] if target.latest else [])
    if len(given) != 1:
        raise ValueError(f"{where} ({', '.join(given) or 'nothing'}) must set exactly one of latest, time, lsn or name")
    for key, pattern, form in (("time", _TIME, "'YYYY-MM-DD HH:MM:SS+00' (with a zone)"),
                               ("lsn", _LSN, "'0/3000060'"), ("name", _RESTORE_POINT, "a restore point name")):
        value = getattr(target, key)
        if value is not None and not pattern.match(value):
            raise ValueError(f"{where}.{key} ({value!r}) must look like {form}")


def source_path(source: SourceArgs, repository: RepositoryArgs) -> str:
    return source.path if source.path is not None else repository.path


def max_backup_interval_seconds(args: BackupArgs) -> int:
    """Longest gap the schedules allow between two backups (alerts allow this plus a grace period)."""
    return max_interval_seconds([s for s in (args.full_schedule, args.diff_schedule) if s is not None])


# -- rendering ---------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Layout:
    """Where things are on the member; the defaults are the pod's. Tests override paths and ports only."""

    data_dir: str = pc.DATA_DIR
    socket_dir: str = pc.SOCKET_DIR
    port: int = pc.POSTGRES_PORT
    spool_dir: str = SPOOL_DIR
    lock_dir: str = LOCK_DIR
    config_file: str = f"{CONFIG_DIR}/{CONFIG_FILE}"
    pgbackrest: str = "pgbackrest"
    ca_file: str | None = None
    """CA bundle for the endpoint; default None: the system's."""


@dataclass(frozen=True, kw_only=True)
class ArchiveLimits:
    archive_push_queue_max: str = "4GiB"
    """WAL kept while the repository is unreachable before pgBackRest drops it; the component sizes it
    from the WAL disk."""


def pgbackrest_conf(args: BackupArgs, layout: Layout = Layout(), limits: ArchiveLimits = ArchiveLimits()) -> str:
    """``pgbackrest.conf``: repository and retention in ``[global]``, the local cluster in ``[<stanza>]``."""
    options: dict[str, str] = {}
    for index, repo in enumerate(repositories(args), start=1):
        options.update(_repository_options(f"repo{index}", repo, args, layout))
    options.update({
        "compress-type": "zst",
        "io-timeout": str(IO_TIMEOUT_S),
        "process-max": str(args.process_max),
        "start-fast": "y",
        "archive-async": "y",
        "archive-push-queue-max": limits.archive_push_queue_max,
        "spool-path": layout.spool_dir,
        "lock-path": layout.lock_dir,
        "log-level-console": "info",
        "log-level-stderr": "warn",
        "log-level-file": "off",
    })
    local = {
        "pg1-path": layout.data_dir,
        "pg1-port": str(layout.port),
        "pg1-socket-path": layout.socket_dir,
        "pg1-user": pc.SUPERUSER,
    }
    lines = ["[global]", *(f"{k}={v}" for k, v in options.items()), "", f"[{args.stanza}]",
             *(f"{k}={v}" for k, v in local.items())]
    return "\n".join(lines) + "\n"


def _repository_options(prefix: str, repo: RepositoryArgs, args: BackupArgs, layout: Layout) -> dict[str, str]:
    """One repository's ``repoN-`` options: where it is, how it is reached, what it keeps."""
    host, _, port = repo.endpoint.partition(":")
    return {
        f"{prefix}-type": "s3",
        f"{prefix}-path": repo.path,
        f"{prefix}-s3-bucket": repo.bucket,
        f"{prefix}-s3-endpoint": host,
        f"{prefix}-s3-region": repo.region,
        f"{prefix}-s3-uri-style": repo.uri_style,
        f"{prefix}-storage-verify-tls": "y" if repo.verify_tls else "n",
        **({f"{prefix}-storage-port": port} if port else {}),
        **({f"{prefix}-storage-ca-file": layout.ca_file} if layout.ca_file else {}),
        f"{prefix}-retention-full-type": "count",
        f"{prefix}-retention-full": str(args.retention_full),
        f"{prefix}-retention-diff": str(args.retention_diff),
        # Small files (most of a PostgreSQL data directory) combined into bundles: one S3 object instead of ~1000
        # per backup. Against the S3 server of tests/backup, a 55 MiB full backup took 5.2 s instead of 28.9 s and a
        # restore 1.1 s instead of 20.0 s (pgBackRest 2.45; bundling exists since 2.39).
        f"{prefix}-bundle": "y",
    }


def option_env(option: str) -> str:
    """The env variable pgBackRest reads ``option`` from: ``PGBACKREST_`` and the name in capitals, ``-`` as ``_``."""
    return "PGBACKREST_" + option.upper().replace("-", "_")


def _pgbackrest(layout: Layout, stanza: str, *extra: str) -> str:
    return shlex.join([layout.pgbackrest, f"--config={layout.config_file}", f"--stanza={stanza}", *extra])


def archive_command(args: BackupArgs, layout: Layout = Layout()) -> str:
    return _pgbackrest(layout, args.stanza, "archive-push") + ' "%p"'


def restore_command(stanza: str, repo_paths: list[str], layout: Layout = Layout()) -> str:
    """``archive-get`` from any stanza, ``repo_paths`` its path in each repository (pgBackRest tries them in order):
    a source stanza has no section in this cluster's config, so the data directory is given on the command line
    (pgBackRest requires ``pg1-path`` for archive-get)."""
    return _pgbackrest(
        layout, stanza, *_path_options(repo_paths), f"--pg1-path={layout.data_dir}", "archive-get", "%f"
    ) + ' "%p"'


def restore_data_command(source: SourceArgs, args: BackupArgs, layout: Layout = Layout()) -> str:
    """Fill the data directory from the source's newest backup (the first repository holding one); recovery
    settings come from Patroni."""
    return _pgbackrest(
        layout, source.stanza, *_path_options(source_paths(source, args)),
        f"--pg1-path={layout.data_dir}", "--delta", "--type=none", "restore",
    )


def _path_options(repo_paths: list[str]) -> list[str]:
    return [f"--repo{index}-path={path}" for index, path in enumerate(repo_paths, start=1)]


def source_paths(source: SourceArgs, args: BackupArgs) -> list[str]:
    """The source stanza's path in each repository: ``source.path`` in all of them, else each one's own path."""
    return [source_path(source, repo) for repo in repositories(args)]


def own_paths(args: BackupArgs) -> list[str]:
    return [repo.path for repo in repositories(args)]


def recovery_conf(target: RestoreTarget, restore: str) -> dict[str, str]:
    """Patroni's ``recovery_conf`` for a point-in-time restore that promotes at the target."""
    conf = {"restore_command": restore, "recovery_target_action": "promote", "recovery_target_timeline": "latest"}
    for key in ("time", "lsn", "name"):
        value = getattr(target, key)
        if value is not None:
            conf[f"recovery_target_{key}"] = value
    if target.latest:
        conf.pop("recovery_target_action")
    return conf


def patroni_backup_config(args: BackupArgs, layout: Layout = Layout()) -> dict[str, Any]:
    """The Patroni sections pgBackRest adds; :func:`merge` them into the component's config."""
    own_restore = restore_command(args.stanza, own_paths(args), layout)
    config: dict[str, Any] = {
        "postgresql": {
            "parameters": {
                "archive_mode": "on",
                "archive_command": archive_command(args, layout),
                "archive_timeout": f"{ARCHIVE_TIMEOUT_S}s",
            },
            "recovery_conf": {"restore_command": own_restore},
        },
    }
    if args.restore is not None:
        source = args.restore.source
        config["bootstrap"] = {
            "method": BOOTSTRAP_METHOD,
            BOOTSTRAP_METHOD: {
                "command": restore_data_command(source, args, layout),
                "no_params": True,
                "keep_existing_recovery_conf": False,
                "recovery_conf": recovery_conf(
                    args.restore.target, restore_command(source.stanza, source_paths(source, args), layout)
                ),
            },
        }
    if args.standby is not None:
        source, standby = args.standby.source, args.standby
        source_restore = restore_command(source.stanza, source_paths(source, args), layout)
        cluster: dict[str, Any] = {"restore_command": source_restore, "create_replica_methods": [BOOTSTRAP_METHOD, "basebackup"]}
        if standby.host is not None:
            cluster.update(host=standby.host, port=standby.port)
        config["bootstrap"] = {"dcs": {"standby_cluster": cluster}}
        config["postgresql"]["create_replica_methods"] = [BOOTSTRAP_METHOD, "basebackup"]
        # no_leader: the method needs no running member to copy from. Without it Patroni drops the method whenever
        # there is no clone source, which for the standby leader of an archive-only standby cluster (no host) is
        # always: it then failed "failed to bootstrap clone from remote member None" (tests/dr found it).
        config["postgresql"][BOOTSTRAP_METHOD] = {
            "command": restore_data_command(source, args, layout), "keep_data": True, "no_params": True,
            "no_leader": True,
        }
    return config


def merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, recursively for mappings (``extra`` wins on leaves)."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def agent_command(args: BackupArgs, *, script: str, patroni_ca: str | None = None) -> list[str]:
    """The agent container's command; ``patroni_ca`` when Patroni's REST API serves HTTPS (TLS on)."""
    schedules = ["--full", args.full_schedule, *(["--diff", args.diff_schedule] if args.diff_schedule else [])]
    tls = ["--patroni-url", "https://127.0.0.1:8008", "--patroni-ca", patroni_ca] if patroni_ca else []
    count = len(repositories(args))
    repos = ["--repositories", str(count)] if count > 1 else []
    return ["python3", script, "--stanza", args.stanza, *schedules, *repos, "--port", str(AGENT_PORT), *tls]


def agent_source() -> str:
    """The agent script shipped in the ConfigMap (this package's ``backup_agent.py``)."""
    from pathlib import Path

    return (Path(__file__).parent / AGENT_FILE).read_text()
