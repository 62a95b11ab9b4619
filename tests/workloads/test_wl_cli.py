"""CLI: environment variables, one-line errors without tracebacks, metric names, JSON logs."""

from __future__ import annotations

import json
import logging
import socket

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from wl_support import run_tsflow
from pgserver import free_port
from tsflow.cli import build_parser, to_consumer_config, to_generator_config
from tsflow.logs import JsonFormatter
from tsflow.metrics import ConsumerMetrics, GeneratorMetrics

GENERATOR_METRICS = [
    "tsflow_generator_rows_written_total", "tsflow_generator_batches_written_total",
    "tsflow_generator_batches_duplicate_total", "tsflow_generator_retries_total",
    "tsflow_generator_buffer_batches", "tsflow_generator_buffer_capacity_batches", "tsflow_generator_rows_rejected_total",
    "tsflow_generator_flush_seconds", "tsflow_generator_last_flush_timestamp_seconds",
]
CONSUMER_METRICS = [
    "tsflow_consumer_analysis_seconds", "tsflow_consumer_data_freshness_seconds",
    "tsflow_consumer_anomalies_found_total", "tsflow_consumer_rows_scanned_total", "tsflow_consumer_runs_total",
    "tsflow_consumer_errors_total", "tsflow_consumer_last_success_timestamp_seconds",
]


def _assert_one_line_error(result: object, fragment: str) -> None:
    rc, err = result.returncode, result.stderr  # type: ignore[attr-defined]
    assert rc != 0
    assert "Traceback" not in err and "Traceback" not in result.stdout  # type: ignore[attr-defined]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tsflow: error: ") and fragment in lines[0], lines[0]


@pytest.mark.parametrize(("args", "env", "fragment"), [
    (["generate", "--interval", "-1"], {}, "--interval: must not be negative"),
    (["generate", "--interval", "0"], {}, "--interval: must be > 0"),
    (["generate", "--devices", "0"], {}, "--devices: must be >= 1"),
    (["generate", "--spike-probability", "2"], {}, "between 0 and 1"),
    (["generate", "--generator-id", "a:b"], {}, "without ':'"),
    (["generate"], {"TSFLOW_DEVICES": "many"}, "TSFLOW_DEVICES: not an integer"),
    (["generate"], {"TSFLOW_PACE": "maybe"}, "TSFLOW_PACE: must be true or false"),
    (["consume", "--threshold", "-3"], {}, "--threshold: must be > 0"),
    (["consume", "--read-dsn", "host"], {}, "--read-dsn/TSFLOW_READ_DSN is not a valid"),
    (["migrate", "--compress-after", "30d", "--retention", "7d"], {}, "must be < --retention"),
    (["migrate", "--compress-after", "1h", "--retention", "2d"], {}, "must be >= 259200s (3d)"),
    (["migrate", "--dsn", "this is not a dsn"], {}, "--dsn/TSFLOW_DSN is not a valid libpq connection string"),
    (["explode"], {}, "invalid choice"),
    ([], {}, "required"),
])
def test_bad_input_is_one_clear_line(args: list[str], env: dict[str, str], fragment: str) -> None:
    result = run_tsflow(args, **env)
    assert result.returncode == 2
    _assert_one_line_error(result, fragment)


@pytest.mark.parametrize("command", ["migrate", "generate", "consume"])
def test_unreachable_database_fails_cleanly(command: str) -> None:
    dsn = f"host=127.0.0.1 port={free_port()} user=nobody dbname=nothing"
    http = [] if command == "migrate" else ["--metrics-port", "0", "--metrics-host", "127.0.0.1"]
    result = run_tsflow([command, "--startup-timeout", "0.3", *http], TSFLOW_DSN=dsn)
    assert result.returncode == 1
    _assert_one_line_error(result, "cannot connect to the database")


def test_unmigrated_database_fails_cleanly(dsn: str) -> None:
    result = run_tsflow(["generate", "--dsn", dsn, "--startup-timeout", "1", "--metrics-port", "0"])
    assert result.returncode == 1
    _assert_one_line_error(result, "run `tsflow migrate` first")


def test_metrics_port_in_use_fails_cleanly(migrated_dsn: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_tsflow(["consume", "--dsn", migrated_dsn, "--once", "--metrics-host", "127.0.0.1",
                             "--metrics-port", str(port)])
    assert result.returncode == 1
    _assert_one_line_error(result, "in use")


def test_every_option_reads_its_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {"TSFLOW_DSN": "host=db", "TSFLOW_GENERATOR_ID": "gen-7", "TSFLOW_DEVICES": "4",
                       "TSFLOW_METRICS_PER_DEVICE": "2", "TSFLOW_INTERVAL": "250ms", "TSFLOW_SHAPE": "walk",
                       "TSFLOW_NOISE": "0", "TSFLOW_SPIKE_PROBABILITY": "0.5", "TSFLOW_SPIKE_MAGNITUDE": "3",
                       "TSFLOW_SEED": "9", "TSFLOW_BATCH_ROWS": "10", "TSFLOW_BATCH_AGE": "2s",
                       "TSFLOW_BUFFER_BATCHES": "7", "TSFLOW_MAX_ROWS": "100", "TSFLOW_PACE": "false",
                       "TSFLOW_BACKFILL": "1h", "TSFLOW_SHUTDOWN_TIMEOUT": "20", "TSFLOW_METRICS_PORT": "9100",
                       "TSFLOW_METRICS_HOST": "127.0.0.1", "TSFLOW_CONNECT_TIMEOUT": "3",
                       "TSFLOW_STARTUP_TIMEOUT": "9", "TSFLOW_MAX_BACKOFF": "4"}.items():
        monkeypatch.setenv(key, value)
    cfg = to_generator_config(build_parser().parse_args(["generate"]))
    assert (cfg.db.dsn, cfg.db.connect_timeout, cfg.db.startup_timeout, cfg.db.max_backoff) == ("host=db", 3, 9, 4)
    assert (cfg.http.host, cfg.http.port) == ("127.0.0.1", 9100)
    assert (cfg.generator_id, cfg.batch_rows, cfg.batch_age, cfg.buffer_batches) == ("gen-7", 10, 2.0, 7)
    assert (cfg.max_rows, cfg.pace, cfg.backfill, cfg.shutdown_timeout) == (100, False, 3600.0, 20.0)
    sim = cfg.sim
    assert (sim.devices, sim.metrics_per_device, sim.interval, sim.shape) == (4, 2, 0.25, "walk")
    assert (sim.noise, sim.spike_probability, sim.spike_magnitude, sim.seed) == (0.0, 0.5, 3.0, 9)
    # the command line wins over the environment
    assert to_generator_config(build_parser().parse_args(["generate", "--devices", "6"])).sim.devices == 6

    for key, value in {"TSFLOW_READ_DSN": "host=db-ro", "TSFLOW_INTERVAL": "15", "TSFLOW_WINDOW": "30m",
                       "TSFLOW_THRESHOLD": "3.5", "TSFLOW_MIN_SAMPLES": "5", "TSFLOW_ONCE": "true"}.items():
        monkeypatch.setenv(key, value)
    ccfg = to_consumer_config(build_parser().parse_args(["consume"]))
    assert (ccfg.read_dsn, ccfg.interval, ccfg.window, ccfg.threshold, ccfg.min_samples, ccfg.once) == (
        "host=db-ro", 15.0, 1800.0, 3.5, 5, True)


def test_defaults_match_the_container_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [k for k in __import__("os").environ if k.startswith("TSFLOW_")]:
        monkeypatch.delenv(key)
    cfg = to_generator_config(build_parser().parse_args(["generate"]))
    assert (cfg.http.port, cfg.shutdown_timeout, cfg.db.dsn) == (8000, 25.0, "")
    assert to_consumer_config(build_parser().parse_args(["consume"])).http.port == 8000


def test_metric_names_are_registered_at_start_up() -> None:
    registry = CollectorRegistry()
    GeneratorMetrics(registry)
    ConsumerMetrics(registry)
    text = generate_latest(registry).decode()
    for name in GENERATOR_METRICS + CONSUMER_METRICS:
        assert f"\n{name}" in text or f"{name}_bucket" in text, name


def test_json_log_lines() -> None:
    record = logging.LogRecord("tsflow.test", logging.WARNING, __file__, 1, "hello %s", ("world",), None)
    record.batch_id = "g:1"
    line = JsonFormatter().format(record)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload["level"] == "warning" and payload["logger"] == "tsflow.test"
    assert payload["msg"] == "hello world" and payload["batch_id"] == "g:1" and payload["ts"].endswith("+00:00")


def test_failed_analysis_run_exits_nonzero(migrated_dsn: str) -> None:
    import psycopg

    with psycopg.connect(migrated_dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE metrics_1m")
    result = run_tsflow(["consume", "--dsn", migrated_dsn, "--once", "--metrics-port", "0",
                         "--metrics-host", "127.0.0.1"])
    assert result.returncode == 1
    _assert_one_line_error(result, "analysis run failed")
