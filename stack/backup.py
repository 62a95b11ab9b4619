"""The ``backup:`` section: pgBackRest archiving, schedules, retention, restore and standby, as ``BackupArgs``.

Absent section: no archiving, no backups. Every mistake names the config key (``schedule.full``,
``restore.target``...) and the bad value; the checks are the component's own
(``components.timescaledb.backup.check_backup``), re-spelled in config keys.
"""

from __future__ import annotations

from components.timescaledb.backup import (
    BackupArgs, RepositoryArgs, RestoreArgs, RestoreTarget, SourceArgs, StandbyArgs, check_backup,
)
from stack.reader import ConfigError, ConfigSection, checked

_DEFAULTS = BackupArgs(
    repository=RepositoryArgs(bucket="-", endpoint="-", region="-", credentials_secret="-"), stanza="-"
)


def parse_backup(section: ConfigSection | None, *, default_stanza: str) -> BackupArgs | None:
    """``BackupArgs`` from the ``backup`` section, or None when it is absent."""
    if section is None:
        return None
    repo = section.section("repository")
    schedule = section.section("schedule")
    retention = section.section("retention")
    defaults = _DEFAULTS
    diff = schedule.text("diff", defaults.diff_schedule)
    secondary = section.optional(section.section, "secondaryRepository")
    args = BackupArgs(
        repository=_repository(repo),
        secondary_repository=_repository(secondary) if secondary is not None else None,
        stanza=section.text("stanza", default_stanza),
        full_schedule=schedule.text("full", defaults.full_schedule),
        diff_schedule=None if diff == "off" else diff,
        retention_full=retention.integer("full", defaults.retention_full, minimum=1),
        retention_diff=retention.integer("diff", defaults.retention_diff, minimum=1),
        process_max=section.integer("processMax", defaults.process_max, minimum=1, maximum=64),
        agent_resources=section.resources("agentResources", defaults.agent_resources),
        restore=_restore(section.optional(section.section, "restore")),
        standby=_standby(section.optional(section.section, "standby")),
    )
    for block in (repo, *([secondary] if secondary is not None else []), schedule, retention, section):
        block.done()
    checked(lambda: check_backup(args, field_name=section.path), renames=_KEYS)
    return args


def _repository(block: ConfigSection) -> RepositoryArgs:
    defaults = _DEFAULTS.repository
    return RepositoryArgs(
        bucket=block.text("bucket"),
        endpoint=block.text("endpoint"),
        region=block.text("region"),
        credentials_secret=block.text("credentialsSecret"),
        path=block.text("path", defaults.path),
        uri_style=block.text("uriStyle", defaults.uri_style, choices=("host", "path")),  # type: ignore[arg-type]
        verify_tls=block.boolean("verifyTls", defaults.verify_tls),
    )


_KEYS = {
    "full_schedule": "schedule.full",
    "diff_schedule": "schedule.diff",
    "retention_full": "retention.full",
    "retention_diff": "retention.diff",
    "restore.source.stanza": "restore.fromStanza",
    "restore.source.path": "restore.fromPath",
    "standby.source.stanza": "standby.fromStanza",
    "standby.source.path": "standby.fromPath",
    "restore.source": "restore.fromStanza",
    "standby.source": "standby.fromStanza",
}


def _source(block: ConfigSection) -> SourceArgs:
    return SourceArgs(stanza=block.text("fromStanza"), path=block.optional(block.text, "fromPath"))


def _restore(block: ConfigSection | None) -> RestoreArgs | None:
    if block is None:
        return None
    target_block = block.optional(block.section, "target")
    if target_block is None:
        raise ConfigError(
            f"{block.key_path('target')}: is required (exactly one of latest: true, time, lsn or name)"
        )
    target = RestoreTarget(
        latest=target_block.boolean("latest", False),
        time=target_block.optional(target_block.text, "time"),
        lsn=target_block.optional(target_block.text, "lsn"),
        name=target_block.optional(target_block.text, "name"),
    )
    restore = RestoreArgs(source=_source(block), target=target)
    target_block.done()
    block.done()
    return restore


def _standby(block: ConfigSection | None) -> StandbyArgs | None:
    if block is None:
        return None
    standby = StandbyArgs(
        source=_source(block),
        host=block.optional(block.text, "host"),
        port=block.integer("port", 5432, minimum=1, maximum=65535),
        source_uses_our_passwords=block.boolean("sourceUsesOurPasswords", False),
    )
    block.done()
    return standby
