"""Backup and WAL-archiving alerts (pgBackRest), as their own rule group.

Metrics come from the TimescaleDB component's backup agent (``components/timescaledb/backup_agent.py``,
scrape job ``pgbackrest``): the repository's newest backups, the agent's own runs, and the member's
``pg_stat_archiver``. Only present when the database has a ``backup`` configuration.
"""

from __future__ import annotations

from typing import Any

from .rules import RULE_PREFIX, Alert, RuleScope, _num

GRACE_SECONDS = 3600
"""Slack on top of the schedule's longest gap: a backup takes time, and the agent checks once a minute."""
READY_SEGMENTS = 32
"""WAL segments (16 MiB each) waiting for archiving that count as lagging: 512 MiB not yet in the repository."""
ARCHIVE_GAP_SECONDS = 300
"""Age of the primary's newest archived segment, while it writes WAL, that counts as a gap: five times the
component's ``archive_timeout`` (60 s, which bounds a DR standby's loss), so past it a promotion loses more."""


def backup_alerts(scope: RuleScope, *, max_backup_age_seconds: float) -> list[Alert]:
    """Alerts for a database whose schedules allow ``max_backup_age_seconds`` between two backups."""
    ns = scope.ns
    allowed = max_backup_age_seconds + GRACE_SECONDS
    return [
        Alert(
            "TimescaleDBBackupTooOld",
            f"time() - max by (namespace) (pgbackrest_backup_last_completed_timestamp_seconds{{{ns}}}) > {_num(allowed)}",
            "10m", "critical",
            "The newest backup in namespace {{ $labels.namespace }} is older than the schedule allows",
            "The newest pgBackRest backup of the database in namespace {{ $labels.namespace }} finished"
            " {{ $value | humanizeDuration }} ago; the schedules allow"
            f" {_num(allowed)}s. Check the backup agent's logs on the primary (container backup-agent).",
        ),
        Alert(
            "TimescaleDBBackupFailed",
            f"pgbackrest_backup_last_run_success{{{ns}}} == 0"
            f" and on (namespace, pod) pgbackrest_agent_leader{{{ns}}} == 1",
            "5m", "warning",
            "{{ $labels.type }} backup failed on {{ $labels.namespace }}/{{ $labels.pod }}",
            "The last {{ $labels.type }} backup the agent on the primary {{ $labels.namespace }}/{{ $labels.pod }}"
            " ran failed; it retries after 15 minutes. See the backup-agent container's log.",
        ),
        Alert(
            "TimescaleDBWalArchivingFailing",
            f"increase(pg_stat_archiver_failed_count{{{ns}}}[10m]) > 0"
            f" unless on (namespace, pod) (pg_stat_archiver_last_archived_timestamp_seconds{{{ns}}}"
            f" > pg_stat_archiver_last_failed_timestamp_seconds{{{ns}}})",
            "5m", "critical",
            "WAL archiving fails on {{ $labels.namespace }}/{{ $labels.pod }}",
            "archive_command keeps failing on {{ $labels.namespace }}/{{ $labels.pod }}: point-in-time recovery"
            " stops at the last archived segment and pg_wal grows. Check the repository and credentials.",
        ),
        Alert(
            "TimescaleDBWalArchiveLagging",
            f"pg_stat_archiver_ready_segments{{{ns}}} > {READY_SEGMENTS}",
            "15m", "warning",
            "WAL archiving lags on {{ $labels.namespace }}/{{ $labels.pod }}",
            "{{ $value }} WAL segments wait to be archived on {{ $labels.namespace }}/{{ $labels.pod }}"
            " (more than 512 MiB not yet in the repository).",
        ),
        Alert(
            "TimescaleDBWalArchiveGap",
            # The primary wrote WAL in the window but archived nothing in it: archiving stopped without failing
            # (e.g. a hung push). archive_timeout switches a written segment within a minute, so an idle cluster
            # (no WAL, nothing to archive) and one first write after idling (archived within a minute) stay quiet.
            f"(time() - pg_stat_archiver_last_archived_timestamp_seconds{{{ns}}}) > {_num(ARCHIVE_GAP_SECONDS)}"
            f" and on (namespace, pod) (increase(patroni_xlog_location{{{ns}}}[{_num(ARCHIVE_GAP_SECONDS)}s]) > 0)"
            f" and on (namespace, pod) patroni_primary{{{ns}}} == 1",
            "5m", "critical",
            "WAL is not reaching the archive from {{ $labels.namespace }}/{{ $labels.pod }}",
            "The primary {{ $labels.namespace }}/{{ $labels.pod }} writes WAL but archived its last segment"
            " {{ $value | humanizeDuration }} ago: a standby cluster replaying the archive, and point-in-time"
            " recovery, miss everything since. Check the backup-agent and pgBackRest archive-push logs.",
        ),
        Alert(
            "TimescaleDBBackupRepositoryError",
            f"max by (namespace, pod) (pgbackrest_repo_up{{{ns}}}) == 0",
            "15m", "critical",
            "The backup repository is unusable from {{ $labels.namespace }}/{{ $labels.pod }}",
            "pgbackrest info fails or reports an unusable stanza from {{ $labels.namespace }}/{{ $labels.pod }}"
            " (unreachable endpoint, bad credentials, or a missing or mismatched stanza).",
        ),
    ]


def backup_rule_groups(scope: RuleScope, *, max_backup_age_seconds: float) -> list[dict[str, Any]]:
    """The backup group of our PrometheusRule (appended to :func:`rules.rule_groups`)."""
    return [
        {
            "name": f"{RULE_PREFIX}.backup",
            "interval": "60s",
            "rules": [a.to_rule() for a in backup_alerts(scope, max_backup_age_seconds=max_backup_age_seconds)],
        }
    ]
