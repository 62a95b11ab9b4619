"""One run of the config reader reports every problem of the stack: each section is read even when another
has failed, and the user gets one message (``N configuration problems:``, one line each)."""

from __future__ import annotations

from typing import Any

import pytest

from stack.config import ConfigError, parse_stack_config
from tests.stack.test_config import MINIMAL, ROOT, stack_config, with_value

K = "timescale-k8s:"


def problems_of(raw: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    error = caught.value
    lines = str(error).splitlines()
    if len(error.problems) > 1:  # the message is exactly the count and the listed problems
        assert lines == [f"{len(error.problems)} configuration problems:", *(f"- {p}" for p in error.problems)]
    return error.problems


def key_of(problem: str) -> str:
    """The config key a problem starts with."""
    return problem.split(" ", 1)[0].rstrip(":")


def test_problems_in_four_sections_are_reported_together() -> None:
    raw = with_value("cluster.namespace", "Bad_Name", MINIMAL)
    raw = with_value("monitoring.mode", "sometimes", raw)
    raw = with_value("timescaledb.parameters", {"max_conections": "500"}, raw)
    raw = with_value("workloads.generator.devices", 0, raw)
    problems = problems_of(raw)
    assert [key_of(p) for p in problems] == [
        f"{K}cluster.namespace", f"{K}monitoring.mode",
        f"{K}timescaledb.parameters['max_conections']", f"{K}workloads.generator.devices",
    ], problems
    assert "did you mean 'max_connections'?" in problems[2]


def test_an_unknown_top_level_key_is_reported_beside_a_section_problem() -> None:
    raw = with_value("timescaledb.replicas", 0, MINIMAL)
    raw["backups"] = {"bucket": "x"}
    problems = problems_of(raw)
    assert problems[0].startswith(f"{K}timescaledb.replicas (0): must be a whole number"), problems
    assert problems[1].startswith(f"{K}backups: unknown setting; did you mean 'backup'?"), problems


def test_the_pooler_is_checked_once_the_database_is_right() -> None:
    # A broken database section: the pooler, which is sized from it, is not judged against a guess.
    raw = with_value("pooler", {"enabled": True, "readWrite": {"poolSize": 500}},
                     with_value("timescaledb.replicas", 0, MINIMAL))
    assert [key_of(p) for p in problems_of(raw)] == [f"{K}timescaledb.replicas"]
    # The database right, the pooler's own problem shows.
    fixed = with_value("timescaledb.replicas", 1, raw)
    (problem,) = problems_of(fixed)
    assert problem.startswith(f"{K}pooler: the read-write (plus read-only with one member) pools may open 1004"), problem


def test_the_same_problem_is_listed_once() -> None:
    # The pooler section is read twice (the database's lookup role, then the pooler itself).
    problems = problems_of(with_value("pooler", "yes", MINIMAL))
    assert problems == (f"{K}pooler ('yes'): must be a mapping of settings, got str",), problems


def test_a_problem_in_the_backup_section_does_not_hide_the_database_ones() -> None:
    prod = stack_config(ROOT / "Pulumi.prod.yaml")
    raw = with_value("backup.schedules", "nightly", with_value("timescaledb.parameters", {"fsync": "off"}, prod))
    keys = [key_of(p) for p in problems_of(raw)]
    assert keys == [f"{K}backup.schedules", f"{K}timescaledb.parameters['fsync']"], keys
