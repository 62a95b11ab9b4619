"""Stack keys of the database's high availability: ``timescaledb.patroni`` and ``timescaledb.podNetworkCidrs``.

Parsed here (typed, with key names in errors); the component's own checks (Patroni's timing rule, CIDR
syntax) run afterwards in ``stack.config`` with the component field names mapped back by
:data:`HA_KEYS`. Also here: the replication capacity a member count needs (:func:`check_replication_capacity`).
"""

from __future__ import annotations

from components.autoscaler import AutoscalingSpec
from components.timescaledb import DEFAULT_POD_NETWORK_CIDRS, PatroniTiming, TimescaleDBArgs
from components.timescaledb import parameters
from components.timescaledb.component import postgresql_parameters
from stack.reader import ConfigError, ConfigSection

HA_KEYS = {"patroni_timing": "patroni"}
"""Component field paths → config keys, for errors raised by the component's checks."""


def patroni_timing(section: ConfigSection) -> PatroniTiming:
    """``timescaledb.patroni``: ``ttl``, ``loopWait``, ``retryTimeout`` (seconds); absent keys keep the defaults."""
    block = section.section("patroni")
    defaults = PatroniTiming()
    timing = PatroniTiming(
        ttl=block.integer("ttl", defaults.ttl),
        loop_wait=block.integer("loopWait", defaults.loop_wait),
        retry_timeout=block.integer("retryTimeout", defaults.retry_timeout),
    )
    block.done()
    return timing


def pod_network_cidrs(section: ConfigSection) -> tuple[str, ...]:
    """``timescaledb.podNetworkCidrs``: CIDRs (IPv4 and/or IPv6) replication may come from; default RFC 1918."""
    return section.string_list(
        "podNetworkCidrs", DEFAULT_POD_NETWORK_CIDRS, example="[10.244.0.0/16, fd00:10:244::/56]"
    )


def check_replication_capacity(section: ConfigSection, args: TimescaleDBArgs, autoscaling: AutoscalingSpec | None) -> None:
    """Refuse a member count (``replicas``, or the HPA's ``autoscaling.maxReplicas`` above it) that the cluster's
    ``max_wal_senders`` / ``max_replication_slots`` cannot serve (formula: ``parameters.REPLICATION_HEADROOM``).

    A replica beyond them never streams: its clone fails, or it replays from the archive only, ever further
    behind. The parameters are cluster-wide and need a restart of every member to change, so the bound is
    checked against the most members the stack may run, not the current count.
    """
    if autoscaling is not None and autoscaling.max_replicas > args.replicas:
        members, key, fewest = autoscaling.max_replicas, section.key_path("autoscaling.maxReplicas"), autoscaling.min_replicas
    else:
        members, key, fewest = args.replicas, section.key_path("replicas"), 1
    effective = postgresql_parameters(args)
    capacity = parameters.replication_capacity(effective)
    problems = []
    for name, needed in parameters.replication_needs(members).items():
        have = int(parameters.parse_value(name, effective[name], parameters.SPECS[name]))
        if have >= needed:
            continue
        origin = "" if name in args.postgresql_parameters else ", the default"
        lower = f" or lower {key} to {capacity}" if capacity >= fewest else ""
        problems.append(
            f"{key} ({members}): {members} members need {section.key_path('parameters')}['{name}'] >= {needed} "
            f"(one per streaming replica, {members - 1}, + {parameters.REPLICATION_HEADROOM[name]} for a pg_basebackup "
            f"cloning a member), but it is {effective[name]}{origin}: raise it to {needed}{lower}"
        )
    if problems:
        raise ConfigError.listing(problems)
