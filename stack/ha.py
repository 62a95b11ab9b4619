"""Stack keys of the database's high availability: ``timescaledb.patroni`` and ``timescaledb.podNetworkCidrs``.

Parsed here (typed, with key names in errors); the component's own checks (Patroni's timing rule, CIDR
syntax) run afterwards in ``stack.config`` with the component field names mapped back by
:data:`HA_KEYS`.
"""

from __future__ import annotations

from components.timescaledb import DEFAULT_POD_NETWORK_CIDRS, PatroniTiming
from stack.reader import ConfigSection

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
