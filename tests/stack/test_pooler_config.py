"""The ``pooler:`` section: defaults, prod, and realistic mistakes with their exact errors."""

from __future__ import annotations

from typing import Any

import pytest

from components.pooler import PoolSettings
from components.timescaledb import TlsIssuer
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
    assert stack.pooler.read_write == PoolSettings(instances=2, pool_size=4, mode="transaction")
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


TLS_DATABASE = {"tlsSecretName": "db-tls", "resources": {"memoryRequest": "4Gi"}}


def test_pooler_with_database_tls_and_its_own_secret() -> None:
    stack = parse({"enabled": True, "tlsSecretName": "pooler-tls"}, timescaledb=TLS_DATABASE)
    assert stack.pooler.tls_secret_name == "pooler-tls" and stack.pooler.tls_issuer is None
    assert stack.pooler.args_fields()["tls_secret_name"] == "pooler-tls"


def test_pooler_certificate_comes_from_the_database_issuer() -> None:
    database = {**TLS_DATABASE, "tlsIssuer": {"name": "internal-ca", "kind": "ClusterIssuer"}}
    stack = parse({"enabled": True, "tlsSecretName": "pooler-tls"}, timescaledb=database)
    assert stack.pooler.tls_issuer == TlsIssuer(name="internal-ca", kind="ClusterIssuer")
    assert stack.pooler.args_fields()["tls_issuer"] is stack.database.args.tls_issuer


def test_pooler_without_a_certificate_of_its_own_is_refused_with_both_keys_named() -> None:
    """Clients verify the host name (verify-full): the database's certificate does not name the pooler."""
    with pytest.raises(ConfigError) as caught:
        parse({"enabled": True}, timescaledb=TLS_DATABASE)
    assert str(caught.value) == (
        "timescale-k8s:pooler.tlsSecretName: is required with timescaledb.tlsSecretName ('db-tls'): clients verify "
        "the pooler's host name (verify-full), so the pooler needs a certificate of its own for its Services "
        "(pooler-rw, pooler-rw.timescale, pooler-rw.timescale.svc, pooler-rw.timescale.svc.cluster.local, pooler-ro, "
        "pooler-ro.timescale, pooler-ro.timescale.svc, pooler-ro.timescale.svc.cluster.local); name a "
        "kubernetes.io/tls Secret holding it and ca.crt (with a cert-manager issuer the pooler's Certificate writes it)"
    )


def test_a_disabled_pooler_may_keep_its_tls_key() -> None:
    assert parse({"enabled": False, "tlsSecretName": "pooler-tls"}).pooler is None


TLS_BAD = [
    ("pooler certificate without database TLS", {"enabled": True, "tlsSecretName": "pooler-tls"}, {},
     "timescale-k8s:pooler.tlsSecretName ('pooler-tls') needs timescaledb.tlsSecretName: PgBouncer verifies the "
     "database (verify-full) with its CA"),
    ("the database's own Secret", {"enabled": True, "tlsSecretName": "db-tls"}, TLS_DATABASE,
     "timescale-k8s:pooler.tlsSecretName ('db-tls') must differ from timescaledb.tlsSecretName"),
    ("not a Secret name", {"enabled": True, "tlsSecretName": "Pooler TLS"}, TLS_DATABASE,
     "timescale-k8s:pooler.tlsSecretName ('Pooler TLS') must be a Secret name"),
    ("issuer but no pooler Secret", {"enabled": True},
     {**TLS_DATABASE, "tlsIssuer": {"name": "internal-ca"}},
     "timescale-k8s:pooler.tlsSecretName: is required with timescaledb.tlsSecretName ('db-tls')"),
]


@pytest.mark.parametrize(("pooler", "database", "message"), [c[1:] for c in TLS_BAD], ids=[c[0] for c in TLS_BAD])
def test_bad_pooler_tls_fails_with_a_clear_error(pooler: dict[str, Any], database: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(pooler, timescaledb=database)
    assert str(caught.value).startswith(message), str(caught.value)


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
