"""Patroni configuration and the post_init bootstrap script (the script runs against a real PostgreSQL)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import psycopg
import pytest
import yaml

from components.shared import scram
from components.timescaledb import patroni_config as pc

LABELS = {"app.kubernetes.io/name": "timescaledb", "app.kubernetes.io/instance": "tsdb"}
PARAMETERS = {**pc.BASE_PARAMETERS, "max_connections": "100", "shared_buffers": "512MB", "max_worker_processes": "21"}


def settings(**overrides: object) -> pc.PatroniSettings:
    values: dict[str, object] = {
        "scope": "tsdb",
        "kubernetes_labels": LABELS,
        "parameters": PARAMETERS,
        "pod_network_cidrs": ["10.0.0.0/8"],
    }
    values.update(overrides)
    return pc.PatroniSettings(**values)  # type: ignore[arg-type]


def test_kubernetes_dcs_uses_endpoints_so_the_leader_lock_carries_the_rw_address() -> None:
    dcs = pc.build_patroni_config(settings())["kubernetes"]
    assert dcs["use_endpoints"] is True
    # The port Patroni writes into the leader Endpoints must carry the read-write Service's port name.
    assert dcs["ports"] == [{"name": pc.LEADER_PORT_NAME, "port": pc.POSTGRES_PORT, "protocol": "TCP"}]
    assert dcs["labels"] == LABELS
    assert dcs["role_label"] == "role"
    assert dcs["leader_label_value"] == "primary"
    assert dcs["follower_label_value"] == "replica"
    assert dcs["standby_leader_label_value"] == "primary"
    assert dcs["scope_label"] == pc.SCOPE_LABEL


def test_cluster_wide_parameters_go_to_the_dcs_and_the_rest_stay_local() -> None:
    config = pc.build_patroni_config(settings())
    dcs = config["bootstrap"]["dcs"]["postgresql"]["parameters"]
    local = config["postgresql"]["parameters"]
    assert dcs["max_connections"] == "100" and dcs["max_worker_processes"] == "21"
    assert "max_connections" not in local and "shared_buffers" in dcs.keys() | local.keys()
    assert set(dcs) <= pc.DCS_ONLY_PARAMETERS
    assert not set(local) & pc.DCS_ONLY_PARAMETERS
    assert {**dcs, **local} == PARAMETERS
    assert "timescaledb" in local["shared_preload_libraries"].split(",")


def test_ha_settings_keep_the_patroni_timing_rule() -> None:
    dcs = pc.build_patroni_config(settings())["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (20, 5, 7)
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
    assert dcs["maximum_lag_on_failover"] == pc.MAXIMUM_LAG_BYTES
    assert dcs["postgresql"]["use_slots"] is True and dcs["postgresql"]["use_pg_rewind"] is True
    custom = pc.build_patroni_config(settings(timing=pc.PatroniTiming(ttl=40, loop_wait=10, retry_timeout=15)))
    assert {k: custom["bootstrap"]["dcs"][k] for k in ("ttl", "loop_wait", "retry_timeout")} == {
        "ttl": 40, "loop_wait": 10, "retry_timeout": 15}


@pytest.mark.parametrize(
    ("timing", "message"),
    [
        (pc.PatroniTiming(ttl=19, loop_wait=1, retry_timeout=3), r"t\.ttl \(19\) must be a whole number of seconds from 20"),
        (pc.PatroniTiming(ttl=20, loop_wait=0, retry_timeout=3), r"t\.loop_wait \(0\) .* from 1"),
        (pc.PatroniTiming(ttl=20, loop_wait=5, retry_timeout=2), r"t\.retry_timeout \(2\) .* from 3"),
        (pc.PatroniTiming(ttl=20, loop_wait=5, retry_timeout=8),
         r"t: loop_wait \(5\) \+ 2 \* retry_timeout \(8\) = 21 must be <= ttl \(20\)"),
        (pc.PatroniTiming(ttl=True, loop_wait=5, retry_timeout=7), r"t\.ttl \(True\)"),  # type: ignore[arg-type]
    ],
)
def test_timing_patroni_would_rewrite_is_rejected(timing: pc.PatroniTiming, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pc.check_timing(timing, field_name="t")


@pytest.mark.parametrize(("mode", "dcs"), [
    ("on", {"synchronous_mode": True, "synchronous_mode_strict": False}),
    ("strict", {"synchronous_mode": True, "synchronous_mode_strict": True}),
    ("off", {"synchronous_mode": False, "synchronous_mode_strict": False}),
])
def test_synchronous_mode_is_seeded_in_the_dcs(mode: str, dcs: dict[str, bool]) -> None:
    config = pc.build_patroni_config(settings(synchronous_mode=mode))
    assert {k: config["bootstrap"]["dcs"][k] for k in dcs} == dcs


def test_an_unknown_synchronous_mode_is_refused() -> None:
    with pytest.raises(ValueError, match=r"synchronous_mode \('quorum'\) must be one of off, on, strict"):
        pc.synchronous_dcs("quorum")


def test_timing_at_patronis_limits_is_accepted() -> None:
    for timing in (pc.PatroniTiming(), pc.PatroniTiming(ttl=20, loop_wait=1, retry_timeout=9),
                   pc.PatroniTiming(ttl=30, loop_wait=10, retry_timeout=10)):
        assert pc.check_timing(timing, field_name="t") is timing


def test_pg_hba_requires_scram_and_limits_replication_to_pod_networks() -> None:
    rules = pc.build_patroni_config(settings(pod_network_cidrs=["10.0.0.0/8", "fd00::/8"]))["postgresql"]["pg_hba"]
    assert rules, "no pg_hba rules"
    for rule in rules:
        method = rule.split()[-1]
        assert method in {"scram-sha-256", "reject", "peer"}, rule
        assert "trust" not in rule and "md5" not in rule
    assert "local all postgres peer" in rules
    # Patroni's own timeline check (use_unix_socket_repl) goes through the pod-local socket, nothing wider.
    assert pc.build_patroni_config(settings())["postgresql"]["use_unix_socket_repl"] is True
    assert [r for r in rules if r.startswith("local replication")] == [f"local replication {pc.REPLICATION_USER} scram-sha-256"]
    replication = [r for r in rules if r.split()[0] == "host" and r.split()[1] == "replication" and r.endswith("scram-sha-256")]
    assert replication == [
        f"host replication {pc.REPLICATION_USER} 10.0.0.0/8 scram-sha-256",
        f"host replication {pc.REPLICATION_USER} fd00::/8 scram-sha-256",
    ]
    # Replication rules come before the catch-all reject and the general rule.
    assert rules.index("host replication all 0.0.0.0/0 reject") > rules.index(replication[-1])


def test_initdb_and_basebackup_put_wal_on_its_own_volume_only_when_asked() -> None:
    plain = pc.build_patroni_config(settings())
    split = pc.build_patroni_config(settings(separate_wal=True))
    assert {"waldir": pc.WAL_DIR} not in plain["bootstrap"]["initdb"]
    assert {"waldir": pc.WAL_DIR} in split["bootstrap"]["initdb"]
    assert {"waldir": pc.WAL_DIR} in split["postgresql"]["basebackup"]
    assert "data-checksums" in plain["bootstrap"]["initdb"]
    assert {"auth-host": "scram-sha-256"} in plain["bootstrap"]["initdb"]


def test_no_secret_material_in_the_config() -> None:
    config = pc.build_patroni_config(settings())
    auth = config["postgresql"]["authentication"]
    assert auth == {"superuser": {"username": pc.SUPERUSER}, "replication": {"username": pc.REPLICATION_USER},
                    "rewind": {"username": pc.REWIND_USER}}
    assert "password" not in pc.render(config).lower().replace("password_encryption", "")
    assert config["bootstrap"]["post_init"] == f"{pc.SCRIPTS_DIR}/{pc.POST_INIT_FILE}"


def test_rendered_file_is_yaml_that_patroni_reads_back_identically() -> None:
    config = pc.build_patroni_config(settings(separate_wal=True))
    assert yaml.safe_load(pc.render(config)) == config


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"Work-Mem": "4MB"}, r"invalid parameter name 'Work-Mem'"),
        ({"port": "5433"}, r"\['port'\] is managed by Patroni"),
        ({"work_mem": ""}, r"\['work_mem'\] \(''\) must be a non-empty single-line string"),
        ({"work_mem": "4MB\nport=1"}, r"single-line"),
        ({"shared_preload_libraries": "pg_stat_statements"}, r"must include 'timescaledb'"),
    ],
)
def test_bad_parameter_overrides_are_rejected(parameters: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pc.check_parameters(parameters, field_name="postgresql_parameters")


def test_good_parameter_overrides_pass_through() -> None:
    checked = pc.check_parameters({"work_mem": "64MB", "timescaledb.max_background_workers": "20"}, field_name="p")
    assert checked == {"work_mem": "64MB", "timescaledb.max_background_workers": "20"}


@pytest.mark.parametrize("bad", ["App", "1app", "app-user", "a" * 64, "drop table", ""])
def test_identifiers_must_need_no_quoting(bad: str) -> None:
    with pytest.raises(ValueError, match=r"app_user \("):
        pc.check_identifier(bad, field_name="app_user")


def test_post_init_reads_passwords_from_files_never_inline() -> None:
    script = pc.post_init_script(pc.BootstrapRoles(database="app", app_user="app", reader_user="reader"))
    assert script.startswith("#!/bin/bash\n")
    for role in ("app", "reader", pc.MONITOR_USER):
        assert f"python3 {pc.SCRIPTS_DIR}/{pc.SCRAM_FILE} {pc.SECRETS_DIR}/{pc.password_file(role)} >" in script
        assert f"`cat {pc.SECRETS_DIR}" not in script, "a password file must never be read into SQL"
    assert "log_statement=none" in script and "pg_stat_statements.track_utility=off" in script
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb;" in script
    assert "GRANT pg_monitor TO monitor;" in script and "pg_read_all_data" not in script
    assert "ALTER DEFAULT PRIVILEGES FOR ROLE app IN SCHEMA public GRANT SELECT ON TABLES TO reader;" in script


# -- the script against a real server ------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    pgserver = pytest.importorskip("bench.pgserver")
    # log_statement=all: the script must switch statement logging off for its own session.
    conf = {"log_statement": "'all'", "shared_preload_libraries": "'pg_stat_statements'",
            "pg_stat_statements.track_utility": "on"}
    with pgserver.PgServer(base_dir=tmp_path, extra_conf=conf) as running:
        hba = running.pgdata / "pg_hba.conf"
        hba.write_text(
            "local all all trust\n"
            f"host all {pc.SUPERUSER} 127.0.0.1/32 trust\n"
            "host all all 127.0.0.1/32 scram-sha-256\n"
        )
        with psycopg.connect(running.dsn(), autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        yield running, pgserver.POSTGRES_BIN_PATH


def _run_post_init(script: Path, url: str, bin_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    return subprocess.run(["bash", str(script), url], capture_output=True, text=True, env=env, timeout=60)


def test_post_init_bootstraps_roles_database_and_grants_idempotently(server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    running, bin_dir = server
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    passwords = {"app": "AppPassw0rd", "reader": "ReaderPassw0rd", pc.MONITOR_USER: "MonitorPassw0rd"}
    for role, password in passwords.items():
        (secrets / pc.password_file(role)).write_text(password + "\n")
    # timescaledb is not in the embedded server; pg_stat_statements exercises the extension step.
    scripts = tmp_path / "scripts"
    scripts.mkdir()
    shutil.copy(scram.__file__, scripts / pc.SCRAM_FILE)
    roles = pc.BootstrapRoles(database="app", app_user="app", reader_user="reader", secrets_dir=str(secrets),
                              scripts_dir=str(scripts), extensions=("pg_stat_statements",))
    script = tmp_path / "post_init.sh"
    script.write_text(pc.post_init_script(roles))
    url = f"postgresql://{pc.SUPERUSER}@{running.host}:{running.port}/postgres"
    for attempt in (1, 2):  # Patroni may retry a failed bootstrap: the script must be re-runnable
        result = _run_post_init(script, url, bin_dir)
        assert result.returncode == 0, f"attempt {attempt}: {result.stderr}"

    def connect(role: str, password: str) -> psycopg.Connection:
        return psycopg.connect(host=running.host, port=running.port, dbname="app", user=role,
                               password=password, autocommit=True)

    with connect("app", passwords["app"]) as app:
        app.execute("CREATE TABLE metrics (t timestamptz, v double precision)")
        app.execute("INSERT INTO metrics VALUES (now(), 1.0)")
        assert app.execute("SELECT extname FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
    with connect("reader", passwords["reader"]) as reader:
        assert reader.execute("SELECT count(*) FROM metrics").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("INSERT INTO metrics VALUES (now(), 2.0)")
    # Read access is to the application database only: not to a table in another database.
    with psycopg.connect(running.dsn(), autocommit=True) as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS other_team_data (secret text)")
    with psycopg.connect(host=running.host, port=running.port, dbname="postgres", user="reader",
                         password=passwords["reader"], autocommit=True) as reader:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            reader.execute("SELECT * FROM other_team_data")
        assert reader.execute("SELECT pg_has_role('reader', 'pg_read_all_data', 'member')").fetchone() == (False,)
    with connect(pc.MONITOR_USER, passwords[pc.MONITOR_USER]) as monitor:
        assert monitor.execute("SELECT pg_has_role('monitor', 'pg_monitor', 'member')").fetchone() == (True,)
    with pytest.raises(psycopg.OperationalError):
        connect("app", "wrong-password")
    log = running.logfile.read_text()
    assert "CREATE TABLE metrics" in log, "statement logging is off, so the check below would prove nothing"
    assert not any(p in log for p in passwords.values()), "a password reached the server log"
    assert "SCRAM-SHA-256$" not in log, "not even a verifier should reach the log"
    with psycopg.connect(running.dsn("app"), autocommit=True) as conn:
        tracked = [row[0] for row in conn.execute("SELECT query FROM pg_stat_statements")]
        stored = dict(conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolpassword IS NOT NULL"))
    assert any("CREATE TABLE metrics" in q for q in tracked), "pg_stat_statements tracks nothing: the check is void"
    assert not [q for q in tracked if any(p in q for p in passwords.values()) or "SCRAM-SHA-256$" in q]
    assert all(stored[role].startswith("SCRAM-SHA-256$4096:") for role in passwords)
