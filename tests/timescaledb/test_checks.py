"""The table of bad configurations: every class of rule in ``components/timescaledb/checks.py``, through the
stack config as a user writes it; each entry asserts that its message names the key and what it breaks."""

from __future__ import annotations

from collections import Counter
from typing import Any
from unittest import mock

import pytest

from components.timescaledb import checks
from stack.config import ConfigError, parse_stack_config
from tests.stack.test_config import ROOT, stack_config, with_value

PROD = stack_config(ROOT / "Pulumi.prod.yaml")
"""Three members, synchronous mode on, backups, protected: the stack whose promises matter most."""
P = "timescale-k8s:timescaledb.parameters"


def prod_with(path: str, value: Any) -> dict[str, Any]:
    return with_value(path, value, PROD)


def params(**values: str) -> dict[str, Any]:
    return prod_with("timescaledb.parameters", values)


BAD: list[tuple[str, str, dict[str, Any], str]] = [
    # (class, what, config, expected fragment)
    ("catalog", "misspelled name", params(max_conections="500"),
     f"{P}['max_conections'] is not a parameter of this PostgreSQL or TimescaleDB; did you mean 'max_connections'?"),
    ("catalog", "misspelled TimescaleDB name", params(**{"timescaledb.max_background_worker": "8"}),
     "did you mean 'timescaledb.max_background_workers'?"),
    ("catalog", "unknown name far from any", params(frobnicate="1"), f"{P}['frobnicate'] is not a parameter"),
    ("catalog", "read-only parameter", params(block_size="16384"), f"{P}['block_size'] ('16384') is read-only"),
    ("catalog", "size without a number", params(work_mem="lots"), f"{P}['work_mem'] ('lots') must be a size such as '256MB'"),
    ("catalog", "size with a time unit", params(maintenance_work_mem="200ms"), "has unit 'ms', which this parameter does not take"),
    ("catalog", "duration with a size unit", params(statement_timeout="8GB"), f"{P}['statement_timeout'] ('8GB') has unit 'GB'"),
    ("catalog", "size above the range", params(shared_buffers="20TB"), f"{P}['shared_buffers'] ('20TB') is outside the PostgreSQL range"),
    ("catalog", "count below the range", params(max_connections="0"), f"{P}['max_connections'] ('0') is outside the PostgreSQL range 1 .. 262143"),
    ("catalog", "enum value that does not exist", params(log_statement="everything"), "must be one of 'none', 'ddl', 'mod', 'all'"),
    ("catalog", "boolean that is not one", params(jit="sometimes"), f"{P}['jit'] ('sometimes') must be a boolean"),
    ("catalog", "real with a unit it does not take", params(random_page_cost="4ms"), f"{P}['random_page_cost'] ('4ms')"),
    ("catalog", "postgres major without a catalog", with_value("timescaledb", {
        "postgresMajor": 14, "image": "timescale/timescaledb-ha:pg14.17-ts2.19.3"}, PROD),
     "postgresMajor (14) has no parameter catalog"),
    ("durability", "fsync off in prod", params(fsync="off"),
     f"{P}['fsync'] ('off') voids durability: a crash can lose acknowledged commits or corrupt the database"),
    ("durability", "full_page_writes off", params(full_page_writes="false"), f"{P}['full_page_writes'] ('false') voids durability"),
    ("durability", "synchronous_commit local with synchronousMode on", params(synchronous_commit="local"),
     f"{P}['synchronous_commit'] ('local') voids no acknowledged commit lost"),
    ("durability", "synchronous_commit off with synchronousMode strict",
     with_value("timescaledb.synchronousMode", "strict", params(synchronous_commit="off")),
     f"{P}['synchronous_commit'] ('off') voids no acknowledged commit lost"),
    ("durability", "zero_damaged_pages on", params(zero_damaged_pages="on"), "voids durability: a crash can lose"),
    ("durability", "data_sync_retry on", params(data_sync_retry="on"), f"{P}['data_sync_retry'] ('on') voids durability"),
    ("replication", "synchronous_standby_names", params(synchronous_standby_names="*"),
     f"{P}['synchronous_standby_names'] ('*') voids replication managed by Patroni"),
    ("replication", "hot_standby", params(hot_standby="off"), f"{P}['hot_standby'] is managed by Patroni"),
    ("replication", "wal_level minimal", params(wal_level="minimal"), f"{P}['wal_level'] ('minimal') must be 'replica' or 'logical'"),
    ("replication", "too few WAL senders for the members", params(max_wal_senders="2"),
     f"5 members need {P}['max_wal_senders'] >= 6"),
    ("replication", "strict with a single member",
     with_value("timescaledb.replicas", 1, with_value("timescaledb.synchronousMode", "strict", with_value("timescaledb.autoscaling", None, PROD))),
     "timescale-k8s:timescaledb.synchronousMode ('strict') needs replicas >= 2 (replicas is 1)"),
    ("archiving", "archive_mode while backup is set", params(archive_mode="off"),
     f"{P}['archive_mode'] ('off') voids archiving managed by backup"),
    ("archiving", "archive_command while backup is set", params(archive_command="/bin/true"),
     f"{P}['archive_command'] ('/bin/true') voids archiving managed by backup"),
    ("archiving", "archive_library while backup is set", params(archive_library="basic_archive"), "voids archiving managed by backup"),
    ("archiving", "restore_command", params(restore_command="cp /x %p"), f"{P}['restore_command'] is managed by Patroni"),
    ("usable database", "every transaction read-only", params(default_transaction_read_only="on"),
     "voids a usable application database: every transaction, migrations included, would be read-only"),
    ("usable database", "TimescaleDB never loads", params(**{"timescaledb.disable_load": "on"}), "TimescaleDB would never load"),
    ("usable database", "preload without timescaledb", params(shared_preload_libraries="pg_stat_statements"), "must include 'timescaledb'"),
    ("usable database", "md5 passwords", params(password_encryption="md5"), "md5 hashes would lock clients out"),
    ("coherence", "max_worker_processes below TimescaleDB and parallel workers", params(max_worker_processes="2"),
     f"{P}['max_worker_processes'] ('2'): 'max_worker_processes' (2) must be at least"),
    ("coherence", "too many background workers for the worker slots", params(**{"timescaledb.max_background_workers": "200"}),
     "TimescaleDB's jobs (compression, retention, continuous aggregate refresh) stop being scheduled"),
    ("coherence", "logical replication workers counted", params(max_logical_replication_workers="100", max_worker_processes="40"),
     "logical replication workers"),
    ("coherence", "reserved connections take every connection", params(superuser_reserved_connections="90", max_connections="90"),
     "the reserved connections (90) must be fewer than 'max_connections' (90)"),
    ("coherence", "pooler pools reach into the superuser-reserved slots", params(superuser_reserved_connections="11"),
     "timescale-k8s:pooler: the read-write (plus read-only with one member) pools may open 80 server connections (pods x "
     "poolSize, at the autoscaler's maximum), but the database allows 79 (max_connections 100 minus 11 reserved for superusers"),
    ("coherence", "pooler pools above a lowered max_connections", params(max_connections="80"),
     "but the database allows 67 (max_connections 80 minus 3 reserved for superusers and 10 for direct clients)"),
    ("coherence", "shared memory larger than the pod", params(shared_buffers="7GB"), "of shared memory"),
    ("coherence", "TLS floor below 1.2", params(ssl_min_protocol_version="TLSv1"), "is below the TLS floor"),
    ("reserved names", "application database named postgres", prod_with("timescaledb.database", "postgres"),
     "timescale-k8s:timescaledb.database ('postgres') is a database every cluster has"),
    ("reserved names", "application database named template1", prod_with("timescaledb.database", "template1"), "is a database every cluster has"),
    ("reserved names", "app user is the superuser", prod_with("timescaledb.appUser", "postgres"), "appUser ('postgres') is reserved for the cluster"),
    ("reserved names", "reader user in the pg_ namespace", prod_with("timescaledb.readerUser", "pg_reader"),
     "readerUser ('pg_reader'): names starting with 'pg_' are reserved by PostgreSQL"),
    ("override", "allowUnsafe names an unguarded parameter", prod_with("timescaledb.allowUnsafe", ["work_mem"]),
     "timescale-k8s:timescaledb.allowUnsafe ('work_mem') is not a guarded parameter"),
    ("override", "allowUnsafe of one key does not allow another",
     with_value("timescaledb.allowUnsafe", ["fsync"], params(fsync="off", full_page_writes="off")),
     "['full_page_writes'] ('off') voids durability"),
]


@pytest.mark.parametrize(("kind", "what", "config", "expected"), BAD, ids=[f"{k}: {w}" for k, w, _, _ in BAD])
def test_bad_configuration_is_refused_naming_the_key(kind: str, what: str, config: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    assert expected in str(caught.value), str(caught.value)


def test_every_class_has_entries() -> None:
    counts = Counter(kind for kind, _, _, _ in BAD)
    assert set(counts) == {"catalog", "durability", "replication", "archiving", "usable database", "coherence",
                           "reserved names", "override"}
    assert min(counts.values()) >= 2, counts


def test_all_problems_are_reported_at_once() -> None:
    config = with_value("timescaledb.database", "postgres", params(max_conections="500", fsync="off", work_mem="lots"))
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(config)
    lines = str(caught.value).splitlines()
    assert lines[0] == "4 configuration problems:", lines
    assert [line.split(" ", 2)[1] for line in lines[1:]] == [
        "timescale-k8s:timescaledb.database", f"{P}['max_conections']", f"{P}['work_mem']", f"{P}['fsync']"]


def test_an_override_is_accepted_and_warned_once_per_key() -> None:
    config = with_value("timescaledb.allowUnsafe", ["fsync", "synchronous_commit"],
                        params(fsync="off", synchronous_commit="local"))
    with mock.patch("stack.config.pulumi.log.warn") as warn, mock.patch("stack.config._WARNED", set()):
        args = parse_stack_config(config).database.args
        parse_stack_config(config)
    assert args.postgresql_parameters["fsync"] == "off"
    messages = [call.args[0] for call in warn.call_args_list]
    overrides = [m for m in messages if "allowed by allowUnsafe" in m]
    assert len(overrides) == 2 and any(f"{P}['fsync'] ('off') voids durability" in m for m in overrides), messages


def test_a_protected_stack_without_tls_or_backups_warns() -> None:
    config = with_value("backup", None, PROD)
    del config["backup"]
    with mock.patch("stack.config.pulumi.log.warn") as warn, mock.patch("stack.config._WARNED", set()):
        parse_stack_config(config)
    messages = [call.args[0] for call in warn.call_args_list]
    assert any(m.startswith("timescale-k8s:timescaledb.tlsSecretName is not set on a protected cluster") for m in messages), messages
    assert any(m.startswith("timescale-k8s:timescaledb.protect is true but the stack has no backup section "
                            "(timescale-k8s:backup)") for m in messages), messages


def test_a_backed_up_stack_without_protection_warns() -> None:
    with mock.patch("stack.config.pulumi.log.warn") as warn, mock.patch("stack.config._WARNED", set()):
        parse_stack_config(prod_with("timescaledb.protect", False))
    messages = [call.args[0] for call in warn.call_args_list]
    assert any(m.startswith("timescale-k8s:timescaledb.protect is false on a cluster with backups") for m in messages), messages


def test_the_stack_files_pass_and_a_bridged_major_warns() -> None:
    with mock.patch("stack.config.pulumi.log.warn") as warn, mock.patch("stack.config._WARNED", set()):
        parse_stack_config(PROD)
    assert any("has no catalog of its own" in call.args[0] for call in warn.call_args_list)


def test_guarded_parameters_are_all_in_the_catalog() -> None:
    from components.timescaledb import catalog
    for major in catalog.catalogued_majors():
        known = catalog.catalog(major)
        assert known is not None
        missing = set(checks.GUARDED) - set(known.parameters) - ({"archive_library"} if major < 15 else set())
        assert not missing, (major, missing)
