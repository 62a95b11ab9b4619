"""The monitoring section: where Grafana is by default, and that the database admits it."""

from __future__ import annotations

from typing import Any

import pytest

from stack.config import ConfigError, parse_stack_config
from tests.stack.test_config import MINIMAL, with_value


def _existing(**settings: Any) -> dict[str, Any]:
    return with_value("monitoring", {"mode": "existing", "existing": {"monitorLabels": {"release": "kps"}, **settings}})


@pytest.mark.parametrize("raw, grafana, clients", [
    (MINIMAL, "monitoring", ("monitoring",)),
    (with_value("monitoring.install", {"namespace": "observability"}), "observability", ("observability",)),
    # kube-prometheus-stack runs Grafana beside Prometheus.
    (_existing(prometheusNamespace="monitoring"), "monitoring", ("monitoring",)),
    (_existing(prometheusNamespace="monitoring", grafanaNamespace="grafana"), "grafana", ("grafana",)),
    (_existing(grafanaNamespace="grafana"), "grafana", ("grafana",)),
    # Everything in the stack's own namespace: nothing further to admit.
    (_existing(), None, ()),
    (_existing(grafanaNamespace="timescale"), "timescale", ()),
])
def test_grafana_namespace_defaults_sensibly_and_is_admitted(raw: dict[str, Any], grafana: str | None,
                                                             clients: tuple[str, ...]) -> None:
    config = parse_stack_config(raw)
    assert config.monitoring.grafana_namespace == grafana
    if config.monitoring.existing is not None:
        assert config.monitoring.existing.grafana_namespace == grafana
    assert tuple(config.database.args.client_namespaces) == clients


def test_disabled_monitoring_admits_no_grafana() -> None:
    config = parse_stack_config(with_value("monitoring", {"mode": "disabled"}))
    assert config.monitoring.grafana_namespace is None and config.database.args.client_namespaces == ()


def test_bad_grafana_namespace_names_the_key() -> None:
    with pytest.raises(ConfigError, match=r"timescale-k8s:monitoring\.existing\.grafanaNamespace \('Grafana'\)"):
        parse_stack_config(_existing(grafanaNamespace="Grafana"))
