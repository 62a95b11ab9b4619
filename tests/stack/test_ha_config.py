"""Stack keys of the database's HA: ``timescaledb.patroni.*`` and ``timescaledb.podNetworkCidrs``."""

from __future__ import annotations

from typing import Any

import pytest

from components.timescaledb import DEFAULT_POD_NETWORK_CIDRS, PatroniTiming
from components.timescaledb import patroni_config as pc
from stack.config import ConfigError, parse_stack_config
from tests.stack.test_config import with_value


def test_defaults_fail_over_fast_and_keep_patronis_rule() -> None:
    args = parse_stack_config(with_value("timescaledb.replicas", 3)).database.args
    assert args.patroni_timing == PatroniTiming(ttl=20, loop_wait=5, retry_timeout=7)
    assert args.pod_network_cidrs == DEFAULT_POD_NETWORK_CIDRS


def test_timing_and_networks_reach_the_component_args() -> None:
    raw = with_value("timescaledb.patroni", {"ttl": 30, "loopWait": 10, "retryTimeout": 10})
    raw["timescaledb"]["podNetworkCidrs"] = ["fd00:10:244::/56", "10.244.0.0/16", "100.64.0.0/10"]
    args = parse_stack_config(raw).database.args
    assert args.patroni_timing == PatroniTiming(ttl=30, loop_wait=10, retry_timeout=10)
    assert args.pod_network_cidrs == ("fd00:10:244::/56", "10.244.0.0/16", "100.64.0.0/10")
    rules = pc.pg_hba(args.pod_network_cidrs)
    assert "host replication standby fd00:10:244::/56 scram-sha-256" in rules
    assert "host replication standby 100.64.0.0/10 scram-sha-256" in rules


def test_a_partial_patroni_block_keeps_the_other_defaults() -> None:
    timing = parse_stack_config(with_value("timescaledb.patroni", {"ttl": 25})).database.args.patroni_timing
    assert timing == PatroniTiming(ttl=25, loop_wait=5, retry_timeout=7)


BAD = [
    ("lock shorter than Patroni allows", with_value("timescaledb.patroni", {"ttl": 10}),
     "timescale-k8s:timescaledb.patroni.ttl (10) must be a whole number of seconds from 20 to 3600 (Patroni's minimum is 20)"),
    ("Patroni's timing rule broken", with_value("timescaledb.patroni", {"ttl": 20, "loopWait": 10, "retryTimeout": 6}),
     "timescale-k8s:timescaledb.patroni: loopWait (10) + 2 * retryTimeout (6) = 22 must be <= ttl (20)"),
    ("retry below Patroni's floor", with_value("timescaledb.patroni", {"retryTimeout": 2}),
     "timescale-k8s:timescaledb.patroni.retryTimeout (2) must be a whole number of seconds from 3"),
    ("fractional loop", with_value("timescaledb.patroni", {"loopWait": 2.5}),
     "timescale-k8s:timescaledb.patroni.loopWait (2.5): must be a whole number"),
    ("misspelt timing key", with_value("timescaledb.patroni", {"loop_wait": 5}),
     "timescale-k8s:timescaledb.patroni.loop_wait: unknown setting; did you mean 'loopWait'?"),
    ("one CIDR as a string", with_value("timescaledb.podNetworkCidrs", "10.0.0.0/8"),
     "timescale-k8s:timescaledb.podNetworkCidrs ('10.0.0.0/8'): must be a non-empty list of strings"),
    ("empty CIDR list", with_value("timescaledb.podNetworkCidrs", []),
     "timescale-k8s:timescaledb.podNetworkCidrs ([]): must be a non-empty list of strings"),
    ("CIDR with host bits", with_value("timescaledb.podNetworkCidrs", ["10.244.1.0/16"]),
     "timescale-k8s:timescaledb.podNetworkCidrs has an invalid network ('10.244.1.0/16'): 10.244.1.0/16 has host bits set"),
    ("bad IPv6 CIDR", with_value("timescaledb.podNetworkCidrs", ["fd00::1::/64"]),
     "timescale-k8s:timescaledb.podNetworkCidrs has an invalid network ('fd00::1::/64')"),
    ("address without a prefix", with_value("timescaledb.podNetworkCidrs", ["10.244.0.0"]),
     "timescale-k8s:timescaledb.podNetworkCidrs has an invalid network ('10.244.0.0'): use CIDR notation"),
    ("replication from anywhere", with_value("timescaledb.podNetworkCidrs", ["10.0.0.0/8", "::/0"]),
     "timescale-k8s:timescaledb.podNetworkCidrs has ('::/0'), which admits replication from every address"),
    ("a network twice", with_value("timescaledb.podNetworkCidrs", ["10.0.0.0/8", "10.0.0.0/8"]),
     "timescale-k8s:timescaledb.podNetworkCidrs (['10.0.0.0/8', '10.0.0.0/8']) lists a network twice"),
]


@pytest.mark.parametrize(("raw", "message"), [(raw, msg) for _, raw, msg in BAD], ids=[c[0] for c in BAD])
def test_bad_ha_config_fails_with_a_clear_error(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_stack_config(raw)
    assert str(caught.value).startswith(message), str(caught.value)


def test_synchronous_mode_defaults_on_and_reaches_the_dcs_and_the_reconciler() -> None:
    assert parse_stack_config(with_value("timescaledb.replicas", 3)).database.args.synchronous_mode == "on"
    args = parse_stack_config(with_value("timescaledb.synchronousMode", "strict", with_value("timescaledb.replicas", 2))).database.args
    assert args.synchronous_mode == "strict"
    with pytest.raises(ConfigError, match=r"timescale-k8s:timescaledb.synchronousMode \('quorum'\): must be one of off, on, strict"):
        parse_stack_config(with_value("timescaledb.synchronousMode", "quorum"))
