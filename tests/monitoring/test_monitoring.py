"""Monitoring under Pulumi mocks, in both modes: what exists, what it selects, where secrets go."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.monitoring.component import (
    analysis_sslmode,
    AlertThresholds, ExistingSettings, InstallSettings, Monitoring, MonitoringArgs,
)
from components.monitoring.settings import KUBE_PROMETHEUS_STACK_REPO
from components.monitoring.stack_install import READER_PASSWORD_ENV
from components.shared.security import container_security_context, pod_security_context
from components.shared.types import ConnectionSecretKeys, DatabaseConnection, Resources, ScrapeTarget
from tests.checks import schema_problems, selects, wiring_problems
from tests.harness import MOCK_SECRET_PREFIX, Recording, RecordedResource, run_program, walk_strings
from tests.monitoring.grafana_chart import grafana_of

APP_NS = "tsdb"
READER_PASSWORD = f"{MOCK_SECRET_PREFIX}reader"
POD_MONITOR = "kubernetes:monitoring.coreos.com/v1:PodMonitor"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
PASSWORD = "random:index/randomPassword:RandomPassword"


def _workload(name: str, labels: dict[str, str], ports: dict[str, int]) -> k8s.apps.v1.Deployment:
    """A real pod owner exposing named metrics ports, like the TimescaleDB and Workload components make."""
    return k8s.apps.v1.Deployment(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=APP_NS, labels=labels),
        spec=k8s.apps.v1.DeploymentSpecArgs(
            replicas=1,
            selector=k8s.meta.v1.LabelSelectorArgs(match_labels=labels),
            template=k8s.core.v1.PodTemplateSpecArgs(
                metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                spec=k8s.core.v1.PodSpecArgs(
                    security_context=pod_security_context(run_as_user=1000),
                    containers=[k8s.core.v1.ContainerArgs(
                        name=port_name,
                        image="example.org/app:1.0.0",
                        ports=[k8s.core.v1.ContainerPortArgs(name=port_name, container_port=number)],
                        resources=Resources(cpu_request="100m", memory_request="128Mi").to_args(),
                        security_context=container_security_context(),
                    ) for port_name, number in ports.items()],
                ),
            ),
        ),
    )


def _targets() -> list[ScrapeTarget]:
    """ScrapeTargets taken from the objects they describe (namespace is the object's own output)."""
    db_labels = {"app.kubernetes.io/name": "timescaledb", "app.kubernetes.io/instance": "db"}
    db = _workload("db", db_labels, {"exporter": 9187, "patroni": 8008})
    targets = [
        ScrapeTarget(job="postgres-exporter", namespace=db.metadata.namespace, pod_labels=db_labels, port_name="exporter"),
        ScrapeTarget(job="patroni", namespace=db.metadata.namespace, pod_labels=db_labels, port_name="patroni"),
    ]
    for component in ("generator", "consumer"):
        labels = {"app.kubernetes.io/name": "tsflow", "app.kubernetes.io/component": component}
        owner = _workload(component, labels, {"metrics": 9100})
        targets.append(ScrapeTarget(job=component, namespace=owner.metadata.namespace, pod_labels=labels,
                                    port_name="metrics"))
    return targets


def _reader() -> DatabaseConnection:
    secret = k8s.core.v1.Secret("reader-credentials", metadata=k8s.meta.v1.ObjectMetaArgs(namespace=APP_NS),
                                string_data={ConnectionSecretKeys.USER: "reader"})
    return DatabaseConnection(
        read_write_host=pulumi.Output.from_input(f"db-primary.{APP_NS}.svc.cluster.local"),
        read_only_host=pulumi.Output.from_input(f"db-replicas.{APP_NS}.svc.cluster.local"),
        port=5432, database="tsdb", user="reader", secret_name=secret.metadata.name,
        client_labels={"timescale-k8s.io/db-client": "true"},
    )


def _program(**overrides: Any) -> Callable[[], None]:
    def program() -> None:
        fields: dict[str, Any] = {
            "namespace": APP_NS, "mode": "install", "install": InstallSettings(), "scrape_targets": _targets(),
            "analysis_datasource": _reader(), "analysis_password": pulumi.Output.secret(READER_PASSWORD),
        }
        fields.update(overrides)
        monitoring = Monitoring("mon", MonitoringArgs(**fields))
        pulumi.export("hint", monitoring.grafana_url_hint)
        pulumi.export("admin_secret", monitoring.grafana_admin_secret_name)
        pulumi.export("dashboards", monitoring.dashboards)
        pulumi.export("rule", monitoring.rule.metadata["name"])
        pulumi.export("has_release", monitoring.release is not None)
        pulumi.export("grafana_namespace", monitoring.grafana_namespace)
    return program


EXISTING = ExistingSettings(
    monitor_labels={"release": "kube-prometheus-stack"},
    dashboard_label=("team/dashboard", "tsdb"),
    datasource_label=("team/datasource", "tsdb"),
    grafana_namespace="grafana",
)


@pytest.fixture(scope="module")
def install() -> Recording:
    return run_program(_program(), stack="dev")


@pytest.fixture(scope="module")
def existing() -> Recording:
    return run_program(_program(mode="existing", install=None, existing=EXISTING), stack="dev")


def _component_children(recording: Recording) -> list[RecordedResource]:
    component = recording.one("timescale-k8s:index:Monitoring")
    return recording.descendants(component.urn)


def test_install_mode_creates_the_stack_and_our_objects(install: Recording) -> None:
    children = _component_children(install)
    assert children
    types = [r.type for r in children]
    assert types.count(POD_MONITOR) == 4
    assert types.count(PROMETHEUS_RULE) == 1
    assert types.count(RELEASE) == 1
    assert types.count(CONFIG_MAP) == 3
    assert types.count(PASSWORD) == 1
    assert {r.name for r in children if r.type == SECRET} == {"mon-grafana-admin", "mon-grafana-reader", "mon-datasource"}
    namespace = install.one("kubernetes:core/v1:Namespace").manifest()
    assert namespace["metadata"]["name"] == "monitoring"
    assert all(r.name.startswith("mon-") for r in children)


def test_release_pins_the_chart_from_the_community_repo(install: Recording) -> None:
    release = install.one(RELEASE).inputs
    assert release["chart"] == "kube-prometheus-stack"
    assert release["version"] == InstallSettings().chart_version != "latest"
    assert release["repositoryOpts"]["repo"] == KUBE_PROMETHEUS_STACK_REPO
    assert release["namespace"] == "monitoring"
    spec = release["values"]["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "7d"
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["resources"]["requests"]["storage"] == "20Gi"
    assert spec["resources"]["requests"] == {"cpu": "500m", "memory": "2Gi"}
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False


def test_grafana_admin_password_comes_from_the_existing_secret(install: Recording) -> None:
    grafana = install.one(RELEASE).inputs["values"]["grafana"]
    secret = install.one(SECRET, "mon-grafana-admin")
    manifest = secret.manifest()
    admin = grafana["admin"]
    assert admin["existingSecret"] == manifest["metadata"]["name"]
    assert manifest["metadata"]["namespace"] == "monitoring"
    assert set(manifest["stringData"]) == {admin["userKey"], admin["passwordKey"]}
    assert manifest["stringData"][admin["passwordKey"]] in install.mock_passwords()
    assert "stringData" in secret.secret_paths
    assert "adminPassword" not in grafana
    assert install.outputs["admin_secret"] == manifest["metadata"]["name"]


def _grafana_objects(recording: Recording) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    dashboards = [r.manifest() for r in recording.of_type(CONFIG_MAP) if r.name.startswith("mon-dashboard-")]
    assert len(dashboards) == 3
    return dashboards, recording.one(SECRET, "mon-datasource").manifest()


def test_installed_grafana_loads_our_dashboards_and_datasource(install: Recording) -> None:
    """Judged by the chart's own pinned defaults merged with our values, not by our values alone."""
    release = install.one(RELEASE).inputs
    grafana = grafana_of(release["values"], release["namespace"])
    dashboards, datasource = _grafana_objects(install)
    assert all(grafana.dashboards.loads(board) for board in dashboards)
    assert grafana.datasources.loads(datasource)
    assert datasource["metadata"]["namespace"] == install.outputs["grafana_namespace"] == "monitoring"


def test_installed_grafana_reads_secrets_only_in_its_own_namespace(install: Recording) -> None:
    release = install.one(RELEASE).inputs
    grafana = grafana_of(release["values"], release["namespace"])
    assert not grafana.reads_every_secret
    for sidecar in (grafana.dashboards, grafana.datasources):
        assert sidecar.namespaces == {"monitoring"} and grafana.may_list(sidecar.namespaces)
    # The chart's defaults alone would grant a ClusterRole and search every namespace for dashboards.
    default = grafana_of({}, "monitoring")
    assert default.reads_every_secret and default.dashboards.namespaces is None


def test_default_chart_grafana_loads_existing_mode_objects_in_its_namespace() -> None:
    """prod's case: kube-prometheus-stack with default values in 'monitoring'; data sources are only
    searched there (the chart sets searchNamespace ALL for dashboards but not for data sources)."""
    recording = run_program(_program(mode="existing", install=None, existing=ExistingSettings(
        monitor_labels={"release": "kube-prometheus-stack"}, grafana_namespace="monitoring")))
    grafana = grafana_of({}, "monitoring")
    dashboards, datasource = _grafana_objects(recording)
    assert all(grafana.dashboards.loads(board) for board in dashboards)
    assert grafana.datasources.loads(datasource)
    assert not grafana.datasources.loads({**datasource, "metadata": {**datasource["metadata"], "namespace": APP_NS}})


def test_grafana_pods_carry_the_database_client_labels(install: Recording) -> None:
    grafana = install.one(RELEASE).inputs["values"]["grafana"]
    assert grafana["podLabels"] == {"timescale-k8s.io/db-client": "true"}


def test_custom_resources_wait_for_the_chart_crds(install: Recording) -> None:
    release = install.one(RELEASE)
    crs = install.of_type(POD_MONITOR) + install.of_type(PROMETHEUS_RULE)
    assert len(crs) == 5
    for resource in crs:
        assert release.urn in resource.dependencies, resource.name


@pytest.mark.parametrize("mode", ["install", "existing"])
def test_no_password_outside_secrets(mode: str, install: Recording, existing: Recording) -> None:
    recording = install if mode == "install" else existing
    passwords = [*recording.mock_passwords(), READER_PASSWORD]
    assert len(passwords) == (2 if mode == "install" else 1)
    leaks = [
        (resource.type, resource.name)
        for resource in recording.resources
        if resource.type not in (SECRET, PASSWORD)
        for text in walk_strings(resource.inputs)
        if any(p in text for p in passwords)
    ]
    assert leaks == []
    assert not any(p in json.dumps(recording.outputs) for p in passwords)
    holders = [r for r in recording.of_type(SECRET) if any(READER_PASSWORD in t for t in walk_strings(r.inputs))]
    assert holders and all("stringData" in r.secret_paths for r in holders)


def _datasource(recording: Recording) -> dict[str, Any]:
    secret = recording.one(SECRET, "mon-datasource")
    assert "stringData" in secret.secret_paths
    (datasource,) = yaml.safe_load(secret.manifest()["stringData"]["timescaledb-datasource.yaml"])["datasources"]
    return datasource


def test_installed_grafana_gets_the_reader_password_from_a_secret_in_its_namespace(install: Recording) -> None:
    """No read-back of the reader Secret: the password Output goes into a Secret beside Grafana, which the
    Grafana container reads as an env var and the data source file expands."""
    assert _datasource(install)["secureJsonData"]["password"] == f"$__env{{{READER_PASSWORD_ENV}}}"
    release = install.one(RELEASE).inputs
    reference = release["values"]["grafana"]["envValueFrom"][READER_PASSWORD_ENV]["secretKeyRef"]
    reader = install.one(SECRET, "mon-grafana-reader").manifest()
    assert reference == {"name": reader["metadata"]["name"], "key": ConnectionSecretKeys.PASSWORD}
    assert reader["metadata"]["namespace"] == release["namespace"]
    assert reader["stringData"][ConnectionSecretKeys.PASSWORD] == READER_PASSWORD


@pytest.mark.parametrize("mode", ["install", "existing"])
def test_nothing_is_read_back_from_the_cluster(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A preview of an empty cluster, or a renderDir run, has nothing to read: no Secret.get at all."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"Secret.get{args} reads the cluster")

    monkeypatch.setattr(k8s.core.v1.Secret, "get", staticmethod(refuse))
    overrides = {} if mode == "install" else {"mode": "existing", "install": None, "existing": EXISTING}
    recording = run_program(_program(**overrides))
    assert recording.one(SECRET, "mon-datasource")


def test_existing_grafana_gets_the_password_in_the_datasource_secret(existing: Recording) -> None:
    assert _datasource(existing)["secureJsonData"]["password"] == READER_PASSWORD
    assert not [r for r in existing.of_type(SECRET) if r.name == "mon-grafana-reader"]


@pytest.mark.parametrize("mode", ["install", "existing"])
def test_datasource_is_the_read_only_replica(mode: str, install: Recording, existing: Recording) -> None:
    recording = install if mode == "install" else existing
    datasource = _datasource(recording)
    assert datasource["url"] == f"db-replicas.{APP_NS}.svc.cluster.local:5432"
    assert datasource["user"] == "reader"
    assert datasource["jsonData"]["database"] == "tsdb"
    analysis = json.loads(recording.one(CONFIG_MAP, "tsdb-analysis").manifest()["data"]["mon-tsdb-analysis.json"])
    used = {t["datasource"]["uid"] for p in analysis["panels"] for t in p.get("targets", [])}
    assert used == {datasource["uid"]}


def test_pod_monitors_select_the_scrape_targets_pods(install: Recording) -> None:
    owners = [m for m in install.manifests() if m["kind"] == "Deployment"]
    monitors = install.of_type(POD_MONITOR)
    assert len(owners) == 3 and len(monitors) == 4
    for resource in monitors:
        spec = resource.manifest()["spec"]
        (endpoint,) = spec["podMetricsEndpoints"]
        matched = [
            o for o in owners
            if o["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]
            and selects(spec["selector"], o["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(matched) == 1, resource.name
        ports = [p["name"] for c in matched[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]]
        assert endpoint["port"] in ports
        assert endpoint["path"] == "/metrics"
        job = resource.name.removeprefix("mon-podmonitor-")
        assert endpoint["relabelings"] == [{"action": "replace", "targetLabel": "job", "replacement": job}]


def test_rules_are_scoped_to_the_targets_namespace_and_jobs(install: Recording) -> None:
    rule = install.one(PROMETHEUS_RULE).manifest()
    assert rule["metadata"]["namespace"] == APP_NS
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert exprs and all('namespace=~"tsdb"' in e for e in exprs)
    assert any('job=~"consumer|generator|patroni|postgres-exporter"' in e for e in exprs)


def test_dashboards_are_configmaps_with_valid_json(install: Recording) -> None:
    assert install.outputs["dashboards"] == ["mon-tsdb-overview", "mon-ingest-pipeline", "mon-tsdb-analysis"]
    for uid in install.outputs["dashboards"]:
        (config_map,) = [m for m in install.manifests()
                         if m["kind"] == "ConfigMap" and f"{uid}.json" in m.get("data", {})]
        assert json.loads(config_map["data"][f"{uid}.json"])["uid"] == uid
        assert config_map["metadata"]["namespace"] == "monitoring"  # Grafana's, which its sidecar watches


def test_manifests_are_valid_and_wired(install: Recording, existing: Recording) -> None:
    for recording in (install, existing):
        manifests = recording.manifests()
        assert manifests
        assert schema_problems(manifests) == []
        assert wiring_problems(manifests) == []


def test_url_hint_is_a_port_forward_to_the_release_grafana(install: Recording) -> None:
    hint = install.outputs["hint"]
    assert hint.startswith("kubectl --namespace monitoring port-forward svc/mon-stack-grafana 3000:80")
    assert install.outputs["admin_secret"] in hint


def test_existing_mode_creates_only_our_objects_with_the_given_labels(existing: Recording) -> None:
    children = _component_children(existing)
    assert children
    types = {r.type for r in children}
    assert RELEASE not in types and PASSWORD not in types and "kubernetes:core/v1:Namespace" not in types
    assert existing.outputs["has_release"] is False
    assert existing.outputs["admin_secret"] == ""
    for resource in existing.of_type(POD_MONITOR) + existing.of_type(PROMETHEUS_RULE):
        manifest = resource.manifest()
        assert manifest["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert manifest["metadata"]["namespace"] == APP_NS
        assert not any("Release" in d for d in resource.dependencies)
    for config_map in existing.of_type(CONFIG_MAP):
        manifest = config_map.manifest()
        assert manifest["metadata"]["labels"]["team/dashboard"] == "tsdb"
        assert manifest["metadata"]["namespace"] == "grafana"
    datasource = existing.one(SECRET, "mon-datasource").manifest()
    assert datasource["metadata"]["labels"]["team/datasource"] == "tsdb"
    assert datasource["metadata"]["namespace"] == "grafana"
    assert "grafana" in existing.outputs["hint"] and "team/dashboard=tsdb" in existing.outputs["hint"]


def test_existing_mode_without_datasource_skips_the_sql_dashboard() -> None:
    recording = run_program(_program(mode="existing", install=None, existing=ExistingSettings(),
                                     analysis_datasource=None, analysis_password=None))
    assert recording.outputs["dashboards"] == ["mon-tsdb-overview", "mon-ingest-pipeline"]
    assert not [r for r in recording.of_type(SECRET) if r.name.startswith("mon-")]


@pytest.mark.parametrize("overrides, message", [
    ({"mode": "both"}, r"mode \('both'\)"),
    ({"install": None}, r"install settings are required when mode is 'install'"),
    ({"existing": ExistingSettings()}, r"existing settings .* must be None when mode is 'install'"),
    ({"install": ExistingSettings()}, r"install \(ExistingSettings\(.*\)\) must be an InstallSettings"),
    ({"install": InstallSettings(chart_version="latest")}, r"install\.chart_version \('latest'\)"),
    ({"install": InstallSettings(chart_version="^79.0")}, r"install\.chart_version"),
    ({"install": InstallSettings(prometheus_retention="a week")}, r"install\.prometheus_retention \('a week'\)"),
    ({"install": InstallSettings(prometheus_storage_size="20")}, r"install\.prometheus_storage_size"),
    ({"install": InstallSettings(monitoring_namespace="Monitoring")}, r"install\.monitoring_namespace"),
    ({"install": InstallSettings(grafana_resources=Resources(cpu_request="1", memory_request="1Gi",
                                                            memory_limit="512Mi"))},
     r"install\.grafana_resources\.memory_limit \(512Mi\) must be >= memory_request \(1Gi\)"),
    ({"alert_thresholds": AlertThresholds(connection_usage_ratio=1.5)}, r"alert_thresholds\.connection_usage_ratio \(1\.5\)"),
    ({"namespace": "Bad_NS"}, r"namespace \('Bad_NS'\)"),
    ({"scrape_targets": []}, r"scrape_targets \(\[\]\)"),
    ({"analysis_sslmode": "prefer"}, r"analysis_sslmode \('prefer'\)"),
    ({"scrape_interval": "often"}, r"scrape_interval \('often'\)"),
    ({"analysis_password": None}, r"analysis_datasource and analysis_password go together"),
])
def test_bad_arguments_are_rejected_naming_the_field(overrides: Mapping[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_program(_program(**overrides))


@pytest.mark.parametrize("target, message", [
    (ScrapeTarget(job="patroni", namespace=APP_NS, pod_labels={"a": "b"}, port_name="patroni"),
     r"scrape_targets\[1\]\.job \('patroni'\) is used by two targets"),
    (ScrapeTarget(job="x", namespace=APP_NS, pod_labels={}, port_name="metrics"), r"scrape_targets\[1\]\.pod_labels"),
    (ScrapeTarget(job="x", namespace=APP_NS, pod_labels={"a": "b"}, port_name="Metrics_Port"),
     r"scrape_targets\[1\]\.port_name \('Metrics_Port'\)"),
    (ScrapeTarget(job="x", namespace=APP_NS, pod_labels={"a": "b"}, port_name="metrics", path="metrics"),
     r"scrape_targets\[1\]\.path \('metrics'\)"),
    (ScrapeTarget(job="X Y", namespace=APP_NS, pod_labels={"a": "b"}, port_name="metrics"),
     r"scrape_targets\[1\]\.job \('X Y'\)"),
    (ScrapeTarget(job="x", namespace=APP_NS, pod_labels={"a": "b"}, port_name="metrics", https_ca_secret="db-tls"),
     r"scrape_targets\[1\]: https_ca_secret \('db-tls'\) and https_server_name \(None\) go together"),
])
def test_bad_scrape_targets_are_rejected_naming_the_field(target: ScrapeTarget, message: str) -> None:
    first = ScrapeTarget(job="patroni", namespace=APP_NS, pod_labels={"a": "b"}, port_name="patroni")
    with pytest.raises(ValueError, match=message):
        run_program(_program(scrape_targets=[first, target]))


@pytest.mark.parametrize("existing, message", [
    (ExistingSettings(monitor_labels={"release": "has space"}), r"existing\.monitor_labels\['release'\]"),
    (ExistingSettings(dashboard_label=("grafana_dashboard",)), r"existing\.dashboard_label"),  # type: ignore[arg-type]
    (ExistingSettings(grafana_namespace="-grafana"), r"existing\.grafana_namespace"),
])
def test_bad_existing_settings_are_rejected(existing: ExistingSettings, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_program(_program(mode="existing", install=None, existing=existing))


def test_grafana_connects_without_tls_to_a_plain_database_and_verifies_a_tls_one(install: Recording) -> None:
    """``require`` (the former default) fails against a server without TLS and, with TLS, checks nothing."""
    assert _datasource(install)["jsonData"]["sslmode"] == "disable"
    plain, tls = _reader(), dataclasses.replace(_reader(), ca_secret_name="db-tls")
    default = MonitoringArgs(namespace=APP_NS, mode="install", scrape_targets=[])
    assert analysis_sslmode(default, plain) == "disable"
    assert analysis_sslmode(default, tls) == "verify-full"
    assert analysis_sslmode(dataclasses.replace(default, analysis_sslmode="require"), tls) == "require", "declared wins"
