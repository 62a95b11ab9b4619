"""The ``pooler:`` section: defaults, prod, and realistic mistakes with their exact errors."""

from __future__ import annotations

from typing import Any

import pytest

from components.pooler import PoolSettings
from stack.config import ConfigError, parse_stack_config
from tests.stack.test_config import MINIMAL

BASE: dict[str, Any] = MINIMAL


def parse(pooler: dict[str, Any], **extra: Any) -> Any:
    return parse_stack_config({**BASE, "pooler": pooler, **extra})


def test_off_by_default_and_then_no_lookup_role() -> None:
    stack = parse_stack_config(BASE)
    assert stack.pooler is None and stack.database.args.pooler_lookup is False


def test_enabled_defaults_turn_on_the_lookup_role() -> None:
    stack = parse({"enabled": True})
    assert stack.database.args.pooler_lookup is True
    assert stack.pooler is not None
    assert stack.pooler.read_write == PoolSettings(instances=2, pool_size=5, mode="transaction")
    assert stack.pooler.read_only == PoolSettings(instances=2, pool_size=2, mode="transaction")
    assert stack.pooler.autoscaling is None


def test_per_path_settings_reach_the_pooler() -> None:
    stack = parse(
        {"enabled": True, "instances": 3, "readWrite": {"poolSize": 4, "mode": "session"}, "readOnly": {"instances": 1}},
        timescaledb={"resources": {"memoryRequest": "4Gi"}},
    )
    assert stack.pooler.read_write == PoolSettings(instances=3, pool_size=4, mode="session")
    assert stack.pooler.read_only == PoolSettings(instances=1, pool_size=2)
    assert stack.pooler.tls_secret_name is None


def test_pooler_with_database_tls_is_refused_until_the_pooler_has_a_certificate() -> None:
    """Clients verify the host name (verify-full); the pooler would present the database's certificate."""
    with pytest.raises(ConfigError, match=r"timescale-k8s:pooler\.enabled \(true\) with timescaledb\.tlsSecretName \('db-tls'\)"):
        parse({"enabled": True}, timescaledb={"tlsSecretName": "db-tls", "resources": {"memoryRequest": "4Gi"}})


def test_disabled_section_is_still_checked() -> None:
    with pytest.raises(ConfigError, match=r"timescale-k8s:pooler\.poolsize: unknown setting"):
        parse({"enabled": False, "poolsize": 5})


BAD = [
    ("unknown mode", {"enabled": True, "readWrite": {"mode": "statement"}},
     "timescale-k8s:pooler.readWrite.mode ('statement'): must be one of"),
    ("pool size zero", {"enabled": True, "readOnly": {"poolSize": 0}},
     "timescale-k8s:pooler.readOnly.poolSize (0): must be a whole number from 1 to 1000"),
    ("unpinned image", {"enabled": True, "image": "ghcr.io/cloudnative-pg/pgbouncer"},
     "timescale-k8s:pooler.image"),
    ("too many server connections for the dev database", {"enabled": True, "readWrite": {"poolSize": 10}},
     "timescale-k8s:pooler: the read-write (plus read-only with one member) pools may open 24 server connections"),
    ("autoscaler maximum overruns max_connections", {"enabled": True, "readWrite": {"poolSize": 5},
                                                     "readOnly": {"poolSize": 1}, "autoscaling": {"maxReplicas": 4}},
     "timescale-k8s:pooler: the read-write (plus read-only with one member) pools may open 24 server connections"),
]


@pytest.mark.parametrize(("pooler", "message"), [(p, m) for _, p, m in BAD], ids=[c[0] for c in BAD])
def test_bad_pooler_config_fails_with_a_clear_error(pooler: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(pooler)
    assert str(caught.value).startswith(message), str(caught.value)
