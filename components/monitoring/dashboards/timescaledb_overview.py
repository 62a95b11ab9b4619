"""TimescaleDB overview: health, roles, connections, transactions, cache, replication, size, WAL and the
TimescaleDB background jobs (failures, compression backlog, rollup lag)."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash

from .common import (
    NAMESPACE, RATE, DashboardIds, prom, prometheus_dashboard, stat_panel, timeseries_panel, to_json,
)
from ..rules import REPLICATION_LAG_BYTES, AlertThresholds, _num

STANDBY_BEHIND_SECONDS = AlertThresholds().standby_behind_seconds

SLUG = "tsdb-overview"
N = NAMESPACE  # short alias: it appears in nearly every f-string below
_JOB_LEGEND = "{{proc_name}} {{hypertable}} (job {{job_id}})"


def build(ids: DashboardIds) -> dict[str, Any]:
    """The dashboard JSON."""
    board = prometheus_dashboard(
        ids, SLUG, "TimescaleDB overview",
        "PostgreSQL/TimescaleDB and Patroni health from postgres_exporter, Patroni and kubelet.",
        "pg_up",
    )
    board = (
        board.with_row(dash.Row("Health"))
        .with_panel(stat_panel("PostgreSQL up", "none", prom(f"min(pg_up{{{N}}})"),
                               description="0 when any exporter cannot reach its PostgreSQL.",
                               steps=((None, "red"), (1, "green")), mappings={"0": ("DOWN", "red"), "1": ("UP", "green")}))
        .with_panel(stat_panel("Primaries", "none", prom(f"sum(patroni_primary{{{N}}})"),
                               description="Members holding the Patroni leader lock: exactly 1 is healthy.",
                               steps=((None, "red"), (1, "green"), (2, "red"))))
        .with_panel(stat_panel("Replicas streaming", "none", prom(f"sum(patroni_postgres_streaming{{{N}}})"),
                               steps=((None, "orange"), (1, "green"))))
        .with_panel(stat_panel("Worst replica lag", "s", prom(f"max(pg_replication_lag_seconds{{{N}}})"),
                               steps=((None, "green"), (10, "orange"), (30, "red"))))
        .with_panel(stat_panel("Cluster role", "none", prom(f"max(patroni_standby_leader{{{N}}})"),
                               description="A primary cluster, or a standby cluster (disaster recovery) replaying its"
                                           " source's archive: read-only until promoted.", span=12,
                               mappings={"0": ("primary cluster", "blue"), "1": ("standby cluster", "purple")}))
        .with_panel(stat_panel("Standby replay delay", "s",
                               prom(f"time() - max(patroni_xlog_replayed_timestamp{{{N}}}"
                                    f" and on (pod) patroni_standby_leader{{{N}}} == 1)"),
                               description="Standby cluster only (empty on a primary cluster): age of the newest"
                                           " commit its standby leader replayed, what a promotion would lose while the"
                                           " source writes. TimescaleDBStandbyBehind fires above"
                                           f" {_num(STANDBY_BEHIND_SECONDS)} s by default.", span=12,
                               steps=((None, "green"), (STANDBY_BEHIND_SECONDS / 2, "orange"), (STANDBY_BEHIND_SECONDS, "red"))))
        .with_panel(stat_panel("Role", "none",
                               prom(f"max by (pod) (patroni_primary{{{N}}}) + 2 * max by (pod) (patroni_standby_leader{{{N}}})",
                                    "{{pod}}"),
                               description="Patroni role of each member.", span=24,
                               mappings={"1": ("primary", "blue"), "0": ("replica", "green"),
                                         "2": ("standby leader", "purple")}))
        .with_row(dash.Row("Load"))
        .with_panel(timeseries_panel(
            "Connections", "short",
            prom(f"sum by (pod, state) (pg_stat_activity_count{{{N}}})", "{{pod}} {{state}}"),
            prom(f"max by (pod) (pg_settings_max_connections{{{N}}})", "{{pod}} max_connections")))
        .with_panel(timeseries_panel(
            "Connection usage", "percentunit",
            prom(f"sum by (pod) (pg_stat_activity_count{{{N}}}) / max by (pod) (pg_settings_max_connections{{{N}}})",
                 "{{pod}}")))
        .with_panel(timeseries_panel(
            "Transactions", "ops",
            prom(f"sum by (pod) (rate(pg_stat_database_xact_commit{{{N}}}[{RATE}]))", "{{pod}} commits"),
            prom(f"sum by (pod) (rate(pg_stat_database_xact_rollback{{{N}}}[{RATE}]))", "{{pod}} rollbacks")))
        .with_panel(timeseries_panel(
            "Cache hit ratio", "percentunit",
            prom(f"sum by (pod) (rate(pg_stat_database_blks_hit{{{N}}}[{RATE}]))"
                 f" / (sum by (pod) (rate(pg_stat_database_blks_hit{{{N}}}[{RATE}]))"
                 f" + sum by (pod) (rate(pg_stat_database_blks_read{{{N}}}[{RATE}])))", "{{pod}}"),
            description="Share of block reads served from shared_buffers; below ~99% the working set no longer fits."))
        .with_row(dash.Row("Replication"))
        .with_panel(timeseries_panel(
            "Replication lag (time)", "s", prom(f"pg_replication_lag_seconds{{{N}}}", "{{pod}}"),
            description="Seconds since the replica replayed its last transaction (0 on the primary; on a standby"
                        " leader, which replays the archive, the age of its newest replayed commit)."))
        .with_panel(timeseries_panel(
            "Replication lag (bytes)", "bytes", prom(f"{REPLICATION_LAG_BYTES}{{{N}}}", "{{pod}}"),
            description="Primary WAL position minus each replica's replayed position (Patroni)."))
        .with_panel(timeseries_panel(
            "Standby replay", "Bps",
            prom(f"rate(patroni_xlog_replayed_location{{{N}}}[{RATE}]) and on (pod) patroni_standby_leader{{{N}}} == 1",
                 "{{pod}} replayed"),
            prom(f"patroni_xlog_paused{{{N}}} and on (pod) patroni_standby_leader{{{N}}} == 1", "{{pod}} paused (1)"),
            description="Standby cluster only: WAL the standby leader replays from the source's archive (or stream)."
                        " Flat at 0 while the source writes means its feed stopped (TimescaleDBStandbyNotReplaying)."))
        .with_row(dash.Row("Storage"))
        .with_panel(timeseries_panel(
            "Database size", "bytes",
            prom(f'max by (datname) (pg_database_size_bytes{{{N}, datname!~"template0|template1"}})', "{{datname}}"),
            span=8))
        .with_panel(timeseries_panel(
            "WAL", "bytes", prom(f"max by (pod) (pg_wal_size_bytes{{{N}}})", "{{pod}} pg_wal size"), span=8))
        .with_panel(timeseries_panel(
            "WAL generated", "Bps",
            prom(f"sum by (scope) (rate(patroni_xlog_location{{{N}}}[{RATE}]))", "{{scope}}"), span=8))
        .with_panel(timeseries_panel(
            "Volume usage", "percentunit",
            prom(f"1 - max by (persistentvolumeclaim) (kubelet_volume_stats_available_bytes{{{N}}})"
                 f" / max by (persistentvolumeclaim) (kubelet_volume_stats_capacity_bytes{{{N}}})",
                 "{{persistentvolumeclaim}}"), span=24))
        .with_row(dash.Row("Background jobs"))
        .with_panel(stat_panel("Failing jobs", "none",
                               prom(f"count(max by (job_id) (timescaledb_job_consecutive_failures{{{N}}}) > 0)"
                                    " or vector(0)"),
                               description="Policy jobs whose last run failed (compression, retention, refresh).",
                               steps=((None, "green"), (1, "red"))))
        .with_panel(stat_panel("Chunks overdue for compression", "none",
                               prom(f"sum(max by (hypertable) (timescaledb_compression_overdue_chunks{{{N}}}))"),
                               description="Uncompressed chunks past compress_after plus one policy run.",
                               steps=((None, "green"), (1, "orange"))))
        .with_panel(stat_panel("Worst rollup lag beyond policy", "s",
                               prom(f"max(timescaledb_continuous_aggregate_watermark_lag_seconds{{{N}}}"
                                    f" - timescaledb_continuous_aggregate_expected_lag_seconds{{{N}}})"),
                               description="Watermark lag minus what the refresh policy allows (end_offset +"
                                           " schedule interval); above 0 the rollup falls behind.",
                               steps=((None, "green"), (1, "orange"), (3600, "red")), span=12))
        .with_panel(timeseries_panel(
            "Consecutive failures per job", "short",
            prom(f"max by (job_id, proc_name, hypertable) (timescaledb_job_consecutive_failures{{{N}}})",
                 _JOB_LEGEND)))
        .with_panel(timeseries_panel(
            "Time since last successful run", "s",
            prom(f"time() - max by (job_id, proc_name, hypertable)"
                 f" (timescaledb_job_last_success_timestamp_seconds{{{N}}})", _JOB_LEGEND),
            prom(f"max by (job_id, proc_name, hypertable) (timescaledb_job_schedule_interval_seconds{{{N}}})",
                 f"{_JOB_LEGEND} schedule interval"),
            description="Age of each job's last success beside its schedule interval; the alert fires after"
                        " three missed runs (by default)."))
        .with_panel(timeseries_panel(
            "Compression backlog", "short",
            prom(f"max by (hypertable) (timescaledb_compression_overdue_chunks{{{N}}})", "{{hypertable}} overdue chunks"),
            prom(f"max by (hypertable) (timescaledb_compression_oldest_overdue_seconds{{{N}}}) / 3600",
                 "{{hypertable}} oldest overdue (hours)")))
        .with_panel(timeseries_panel(
            "Rollup watermark lag", "s",
            prom(f"max by (view) (timescaledb_continuous_aggregate_watermark_lag_seconds{{{N}}})", "{{view}} lag"),
            prom(f"max by (view) (timescaledb_continuous_aggregate_expected_lag_seconds{{{N}}})", "{{view}} allowed")))
    )
    return to_json(_backup_row(board))


def _backup_row(board: dash.Dashboard) -> dash.Dashboard:
    """pgBackRest (the backup agent's metrics): empty for a stack without ``backup``."""
    return (
        board.with_row(dash.Row("Backups and WAL archiving"))
        .with_panel(stat_panel(
            "Newest backup age", "s",
            prom(f"time() - max(pgbackrest_backup_last_completed_timestamp_seconds{{{N}}})"),
            description="Time since the newest backup in the repository finished (any type).", span=6,
            steps=((None, "green"), (26 * 3600, "orange"), (8 * 86400, "red"))))
        .with_panel(stat_panel(
            "Repository", "none", prom(f"min(pgbackrest_repo_up{{{N}}})"), span=6,
            description="pgbackrest info succeeds and the stanza is usable, from every member.",
            steps=((None, "red"), (1, "green")), mappings={"0": ("ERROR", "red"), "1": ("OK", "green")}))
        .with_panel(timeseries_panel(
            "Backup size in repository", "bytes",
            prom(f"max by (type) (pgbackrest_backup_last_size_bytes{{{N}}})", "{{type}}"), span=12,
            description="Repository size of the newest backup of each type (compressed, its own files only)."))
        .with_panel(timeseries_panel(
            "WAL archive rate", "ops",
            prom(f"sum(rate(pg_stat_archiver_archived_count{{{N}}}[{RATE}]))", "archived"),
            prom(f"sum(rate(pg_stat_archiver_failed_count{{{N}}}[{RATE}]))", "failed"), span=12,
            description="WAL segments archived (and failed attempts) per second, from pg_stat_archiver."))
        .with_panel(timeseries_panel(
            "WAL waiting to be archived", "short",
            prom(f"max by (pod) (pg_stat_archiver_ready_segments{{{N}}})", "{{pod}}"), span=12,
            description="Segments in pg_wal/archive_status/*.ready: what a lost primary volume would lose."))
    )
