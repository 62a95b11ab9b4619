"""Replication capacity: the most database members a stack may run (``replicas``, or the HPA's
``autoscaling.maxReplicas``) must fit ``max_wal_senders`` and ``max_replication_slots``.

Formula (``components.timescaledb.parameters.REPLICATION_HEADROOM``), for two members or more: one WAL
sender and one slot per streaming replica (``members - 1``), plus two senders and one temporary slot for a
``pg_basebackup -X stream`` cloning a member: ``max_wal_senders >= members + 1``,
``max_replication_slots >= members``.
"""

from __future__ import annotations

from typing import Any

import pytest

from components.timescaledb import parameters as pp
from components.timescaledb import patroni_config as pc
from components.timescaledb.component import postgresql_parameters
from stack.config import ConfigError, parse_stack_config
from tests.stack.test_config import MINIMAL, with_value

DB = "timescale-k8s:timescaledb"


def database(**settings: Any) -> dict[str, Any]:
    return with_value("timescaledb", settings, MINIMAL)


@pytest.mark.parametrize(("members", "senders", "slots"), [(1, 0, 0), (2, 3, 2), (3, 4, 3), (9, 10, 9), (20, 21, 20)])
def test_the_formula(members: int, senders: int, slots: int) -> None:
    assert pp.replication_needs(members) == {"max_wal_senders": senders, "max_replication_slots": slots}
    if members > 1:  # the capacity of exactly-sized settings is that member count
        assert pp.replication_capacity({"max_wal_senders": str(senders), "max_replication_slots": str(slots)}) == members


def test_the_defaults_serve_nine_members_the_most_replicas_allows() -> None:
    defaults = {name: pc.BASE_PARAMETERS[name] for name in pp.REPLICATION_HEADROOM}
    assert pp.replication_capacity(defaults) == 9
    parse_stack_config(database(replicas=9))
    parse_stack_config(database(replicas=3, autoscaling={"minReplicas": 3, "maxReplicas": 9}))


def test_raised_settings_admit_a_larger_autoscaling_ceiling_and_are_rendered() -> None:
    raw = database(replicas=3, autoscaling={"maxReplicas": 20},
                   parameters={"max_wal_senders": 21, "max_replication_slots": 20})
    args = parse_stack_config(raw).database.args
    rendered = postgresql_parameters(args)
    assert (rendered["max_wal_senders"], rendered["max_replication_slots"]) == ("21", "20")


def test_a_single_member_needs_no_senders() -> None:
    parse_stack_config(database(replicas=1, parameters={"max_wal_senders": 0, "max_replication_slots": 0}))


BAD = [
    ("HPA ceiling above the default senders", database(replicas=3, autoscaling={"minReplicas": 3, "maxReplicas": 12}),
     f"{DB}.autoscaling.maxReplicas (12): 12 members need {DB}.parameters['max_wal_senders'] >= 13 "
     "(one per streaming replica, 11, + 2 for a pg_basebackup cloning a member), but it is 10, the default: "
     f"raise it to 13 or lower {DB}.autoscaling.maxReplicas to 9"),
    ("one HPA step too many", database(replicas=3, autoscaling={"maxReplicas": 10}),
     f"{DB}.autoscaling.maxReplicas (10): 10 members need {DB}.parameters['max_wal_senders'] >= 11"),
    ("senders raised, slots forgotten", database(replicas=3, autoscaling={"maxReplicas": 20}, parameters={"max_wal_senders": 21}),
     f"{DB}.autoscaling.maxReplicas (20): 20 members need {DB}.parameters['max_replication_slots'] >= 20 "
     "(one per streaming replica, 19, + 1 for a pg_basebackup cloning a member), but it is 10, the default: "
     f"raise it to 20 or lower {DB}.autoscaling.maxReplicas to 10"),
    ("replicas above lowered slots", database(replicas=5, parameters={"max_replication_slots": 4}),
     f"{DB}.replicas (5): 5 members need {DB}.parameters['max_replication_slots'] >= 5 "
     f"(one per streaming replica, 4, + 1 for a pg_basebackup cloning a member), but it is 4: "
     f"raise it to 5 or lower {DB}.replicas to 4"),
    ("no headroom for a clone", database(replicas=3, parameters={"max_wal_senders": 2}),
     f"{DB}.replicas (3): 3 members need {DB}.parameters['max_wal_senders'] >= 4"),
    ("ceiling that cannot be lowered enough", database(replicas=3, autoscaling={"maxReplicas": 6}, parameters={"max_wal_senders": 3}),
     f"{DB}.autoscaling.maxReplicas (6): 6 members need {DB}.parameters['max_wal_senders'] >= 7 "
     "(one per streaming replica, 5, + 2 for a pg_basebackup cloning a member), but it is 3: raise it to 7"),
]


@pytest.mark.parametrize(("raw", "message"), [(raw, msg) for _, raw, msg in BAD], ids=[c[0] for c in BAD])
def test_too_many_members_for_the_replication_settings_are_refused(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    problems = caught.value.problems
    assert any(problem.startswith(message) for problem in problems), problems
    assert all(problem.count(DB) >= 2 for problem in problems)  # both keys: the member count and the parameter


def test_both_shortfalls_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(database(replicas=3, autoscaling={"maxReplicas": 12}))
    lines = str(caught.value).splitlines()
    assert lines[0] == "2 configuration problems:", lines
    assert [line.split("['")[1].split("']")[0] for line in lines[1:]] == ["max_wal_senders", "max_replication_slots"]
