"""Monitoring: scrape, alert on and chart TimescaleDB and the tsflow workloads, in either of the two ways
platform teams run Prometheus.

- ``mode="install"``: install kube-prometheus-stack (Prometheus Operator, Prometheus, Alertmanager,
  Grafana, kube-state-metrics, node-exporter) and point it at our objects.
- ``mode="existing"``: the cluster already runs the operator and a sidecar-provisioned Grafana; create
  only our PodMonitors, PrometheusRule, dashboard ConfigMaps and data source Secret, labelled the way
  that installation selects them.

Why ``helm.v3.Release`` and not ``helm.v4.Chart``: a Release runs Helm itself, so the chart's hooks (the
admission-webhook certificate Jobs), its ``crds/`` handling and ``helm list``/``helm rollback`` work
exactly as the chart's authors test them, and the whole stack is one resource that our custom
resources can ``depends_on`` (Pulumi waits until the release, CRDs included, is deployed). ``v4.Chart``
renders templates into individual Pulumi resources without running hooks, and is a remote component
whose children the mock test harness cannot see; under mocks a v3 Release is recorded like any other
custom resource, so tests can inspect its values.

Where Grafana looks: its sidecars watch labelled ConfigMaps/Secrets in the namespaces of their
``searchNamespace`` (unset: Grafana's own namespace; kube-prometheus-stack 79.10.0 sets ``ALL`` for
dashboards only). So dashboards and the data source go into *Grafana's* namespace in both modes: the
release namespace in install mode, ``ExistingSettings.grafana_namespace`` in existing mode. Install mode
sets ``rbac.namespaced`` and points both sidecars at that one namespace, so Grafana gets a Role there
instead of cluster-wide read on every Secret.

Secrets: the Grafana admin password comes from ``pulumi_random``, lives only in a Kubernetes Secret in
the monitoring namespace and reaches the chart as ``grafana.admin.existingSecret``. The PostgreSQL data
source needs the read-only role's password, which the program already holds (the TimescaleDB
component's ``reader_password`` Output): nothing is read back from the cluster, so a preview of an empty
cluster and a ``renderDir`` run both produce the data source. A Pod cannot reference a Secret in another
namespace, so the password is stored once more, in Grafana's namespace:

- install mode: in a Secret that the Grafana container reads as ``READER_PASSWORD_ENV``
  (``grafana.envValueFrom``, a ``secretKeyRef``); the provisioning file says
  ``$__env{TIMESCALEDB_READER_PASSWORD}`` and carries no password;
- existing mode: someone else's Grafana has no such env, so the provisioning file itself holds the
  password, in a Secret (the sidecar's default ``resource: both`` reads Secrets).

Either way the password never appears in a ConfigMap, in Helm values or in a plain-text output.
"""

from __future__ import annotations

import json
import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from .dashboards import DashboardIds, build_dashboards
from .pooler_rules import POOLER_JOB
from ..shared.labels import recommended_labels
from .rules import AlertThresholds, RuleScope, rule_groups
from .rules_backup import backup_rule_groups
from .settings import (
    INSTALL_DASHBOARD_LABEL, INSTALL_DATASOURCE_LABEL, KUBE_PROMETHEUS_STACK_REPO, ExistingSettings, InstallSettings,
    check_dns_label, check_labels,
)
from .stack_install import (
    GRAFANA_ADMIN_PASSWORD_KEY, GRAFANA_ADMIN_USER_KEY, GRAFANA_FOLDER_ANNOTATION, READER_PASSWORD_ENV,
    env_reference, kube_prometheus_stack_values, postgres_datasource_file,
)
from ..shared.types import ConnectionSecretKeys, DatabaseConnection, ScrapeTarget

__all__ = ["AlertThresholds", "ExistingSettings", "InstallSettings", "Monitoring", "MonitoringArgs"]

TYPE_TOKEN = "timescale-k8s:index:Monitoring"
APP = "timescale-k8s-monitoring"
MONITORING_API = "monitoring.coreos.com/v1"
GRAFANA_FOLDER = "TimescaleDB"
SSL_MODES = ("disable", "require", "verify-ca", "verify-full")
CA_KEY = "ca.crt"
"""Key of the CA certificate in a ``kubernetes.io/tls`` Secret (cert-manager writes it)."""
_PORT_NAME_MAX = 15  # IANA_SVC_NAME


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    """Inputs of ``Monitoring``."""

    namespace: pulumi.Input[str]
    """Namespace of our monitors, rules and dashboards (the app namespace); required."""
    mode: Literal["install", "existing"]
    """``install`` kube-prometheus-stack, or use the ``existing`` operator and Grafana; required."""
    scrape_targets: Sequence[ScrapeTarget]
    """Pods to scrape, from the TimescaleDB component (exporter, Patroni) and each Workload; required."""
    analysis_datasource: DatabaseConnection | None = None
    """Read-only connection for the SQL analysis dashboard (TimescaleDB's ``reader_connection``); default none."""
    analysis_password: pulumi.Input[str] | None = None
    """That role's password, a secret Output (TimescaleDB's ``reader_password``); required with
    ``analysis_datasource``, default none."""
    install: InstallSettings | None = None
    """Settings for ``mode="install"`` (required there, must be None otherwise); default none."""
    existing: ExistingSettings | None = None
    """Settings for ``mode="existing"`` (required there, must be None otherwise); default none."""
    alert_thresholds: AlertThresholds = field(default_factory=AlertThresholds)
    """Alert thresholds; default ``AlertThresholds()``."""
    analysis_sslmode: Literal["disable", "require", "verify-ca", "verify-full"] | None = None
    """TLS mode of Grafana's database connection; default ``verify-full`` (against the database's CA, the
    server's name checked) when the connection has TLS, ``disable`` when the database has none."""
    scrape_interval: str = "30s"
    """How often each PodMonitor endpoint is scraped; default ``30s``."""
    backup_max_age_seconds: int | None = None
    """Longest gap the database's backup schedules allow (TimescaleDB's ``backup_max_age_seconds``): adds the
    backup and WAL-archiving alerts; default None (no backups, no backup alerts)."""


class Monitoring(pulumi.ComponentResource):
    """PodMonitors, alert and recording rules, Grafana dashboards and data source, optionally the whole stack."""

    grafana_url_hint: pulumi.Output[str]
    """How to open Grafana (a ``kubectl port-forward`` command in install mode, a note otherwise)."""
    grafana_admin_secret_name: pulumi.Output[str]
    """Secret holding Grafana's admin credentials (install mode); empty string in existing mode."""
    rule: k8s.apiextensions.CustomResource
    """The PrometheusRule with our recording rules and alerts."""
    pod_monitors: list[k8s.apiextensions.CustomResource]
    """One PodMonitor per scrape target, in ``scrape_targets`` order."""
    dashboards: list[str]
    """Uids of the Grafana dashboards we provision."""
    release: k8s.helm.v3.Release | None
    """The kube-prometheus-stack Helm release (install mode) or None."""
    grafana_namespace: pulumi.Output[str]
    """Namespace of Grafana, where our dashboards and data source are."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        _validate(args)
        super().__init__(TYPE_TOKEN, name, None, opts)
        labels = recommended_labels(app=APP, instance=name, component="monitoring")
        existing = args.existing or ExistingSettings()
        monitor_labels = {**labels, **dict(existing.monitor_labels)}
        dashboard_label = existing.dashboard_label if args.mode == "existing" else INSTALL_DASHBOARD_LABEL
        datasource_label = existing.datasource_label if args.mode == "existing" else INSTALL_DATASOURCE_LABEL

        self.release = None
        self.grafana_admin_secret_name = pulumi.Output.from_input("")
        self.grafana_namespace = pulumi.Output.from_input(existing.grafana_namespace or args.namespace)
        self.grafana_url_hint = pulumi.Output.concat(
            "Grafana is managed outside this stack; dashboards are ConfigMaps labelled ",
            f"{dashboard_label[0]}={dashboard_label[1]} in namespace ", self.grafana_namespace,
        )
        password: pulumi.Input[str] | None = args.analysis_password
        if args.mode == "install":
            assert args.install is not None  # _validate guarantees it
            self._install(name, args, args.install, labels)
            password = env_reference(READER_PASSWORD_ENV)
        grafana_namespace = self.grafana_namespace

        crd_opts = pulumi.ResourceOptions(parent=self, depends_on=[self.release] if self.release else None)
        self.pod_monitors = [
            self._pod_monitor(name, args, target, monitor_labels, crd_opts) for target in args.scrape_targets
        ]
        self.rule = self._prometheus_rule(name, args, monitor_labels, crd_opts)

        ids = DashboardIds(name)
        boards = build_dashboards(ids, with_analysis=args.analysis_datasource is not None,
                                  with_pooler=any(t.job == POOLER_JOB for t in args.scrape_targets))
        for slug, board in boards.items():
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{slug}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    namespace=grafana_namespace,
                    labels={**labels, dashboard_label[0]: dashboard_label[1]},
                    annotations={GRAFANA_FOLDER_ANNOTATION: GRAFANA_FOLDER},
                ),
                data={f"{board['uid']}.json": json.dumps(board, sort_keys=True)},
                opts=pulumi.ResourceOptions(parent=self),
            )
        self.dashboards = [board["uid"] for board in boards.values()]
        if args.analysis_datasource is not None and password is not None:
            self._datasource(name, args, args.analysis_datasource, password, ids,
                             {**labels, datasource_label[0]: datasource_label[1]})

        self.register_outputs({
            "grafana_url_hint": self.grafana_url_hint,
            "grafana_admin_secret_name": self.grafana_admin_secret_name,
            "rule": self.rule,
            "pod_monitors": self.pod_monitors,
            "dashboards": self.dashboards,
            "release": self.release,
            "grafana_namespace": self.grafana_namespace,
        })

    def _install(self, name: str, args: MonitoringArgs, settings: InstallSettings, labels: dict[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        namespace: pulumi.Input[str] = settings.monitoring_namespace
        if settings.create_namespace:
            namespace = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=settings.monitoring_namespace,  # fixed: the chart's objects and our hint refer to it
                    # node-exporter needs hostNetwork/hostPID/hostPath, which only 'privileged' admits.
                    labels={**labels, "pod-security.kubernetes.io/enforce": "privileged"},
                ),
                opts=child,
            ).metadata.name
        password = random.RandomPassword(f"{name}-grafana-admin-password", length=32, special=False, opts=child)
        admin_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=namespace, labels=labels),
            type="Opaque",
            string_data={
                GRAFANA_ADMIN_USER_KEY: "admin",
                GRAFANA_ADMIN_PASSWORD_KEY: pulumi.Output.secret(password.result),
            },
            opts=child,
        )
        grafana_pod_labels = dict(args.analysis_datasource.client_labels) if args.analysis_datasource else {}
        reader_secret = None
        if args.analysis_password is not None:
            reader_secret = k8s.core.v1.Secret(
                f"{name}-grafana-reader",
                metadata=k8s.meta.v1.ObjectMetaArgs(namespace=namespace, labels=labels),
                type="Opaque",
                string_data={ConnectionSecretKeys.PASSWORD: pulumi.Output.secret(args.analysis_password)},
                opts=child,
            )
        self.release = k8s.helm.v3.Release(
            f"{name}-stack",
            k8s.helm.v3.ReleaseArgs(
                chart="kube-prometheus-stack",
                version=settings.chart_version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBE_PROMETHEUS_STACK_REPO),
                namespace=namespace,
                values=kube_prometheus_stack_values(
                    settings, admin_secret_name=admin_secret.metadata.name, grafana_pod_labels=grafana_pod_labels,
                    grafana_namespace=namespace,
                    reader_password_secret=reader_secret.metadata.name if reader_secret else None,
                ),
                atomic=True,
                cleanup_on_fail=True,
                timeout=900,
                max_history=10,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[admin_secret, *([reader_secret] if reader_secret else [])]),
        )
        self.grafana_namespace = pulumi.Output.from_input(namespace)
        self.grafana_admin_secret_name = admin_secret.metadata.name
        self.grafana_url_hint = pulumi.Output.concat(
            "kubectl --namespace ", namespace, " port-forward svc/", self.release.status.name,
            "-grafana 3000:80  # then open http://localhost:3000 as 'admin'; password: key '",
            GRAFANA_ADMIN_PASSWORD_KEY, "' of Secret ", admin_secret.metadata.name,
        )

    def _pod_monitor(self, name: str, args: MonitoringArgs, target: ScrapeTarget, labels: dict[str, str],
                     opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
        return k8s.apiextensions.CustomResource(
            f"{name}-podmonitor-{target.job}",
            api_version=MONITORING_API,
            kind="PodMonitor",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=args.namespace, labels=labels),
            spec={
                "selector": {"matchLabels": dict(target.pod_labels)},
                "namespaceSelector": {"matchNames": [target.namespace]},
                "podMetricsEndpoints": [{
                    "port": target.port_name,
                    "path": target.path,
                    "interval": args.scrape_interval,
                    # The job label our rules and dashboards select on (default would be <ns>/<podmonitor>).
                    "relabelings": [{"action": "replace", "targetLabel": "job", "replacement": target.job}],
                    **scrape_tls(target),
                }],
            },
            opts=opts,
        )

    def _prometheus_rule(self, name: str, args: MonitoringArgs, labels: dict[str, str],
                         opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
        jobs = tuple(t.job for t in args.scrape_targets)
        thresholds, max_age = args.alert_thresholds, args.backup_max_age_seconds
        groups = pulumi.Output.all(*[t.namespace for t in args.scrape_targets]).apply(
            lambda namespaces: [
                *rule_groups(RuleScope(tuple(namespaces), jobs), thresholds),
                *(backup_rule_groups(RuleScope(tuple(namespaces), jobs), max_backup_age_seconds=max_age)
                  if max_age is not None else []),
            ]
        )
        return k8s.apiextensions.CustomResource(
            f"{name}-rules",
            api_version=MONITORING_API,
            kind="PrometheusRule",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=args.namespace, labels=labels),
            spec={"groups": groups},
            opts=opts,
        )

    def _datasource(self, name: str, args: MonitoringArgs, conn: DatabaseConnection, password: pulumi.Input[str],
                    ids: DashboardIds, labels: dict[str, str]) -> k8s.core.v1.Secret:
        """The provisioning file, as a Secret in Grafana's namespace (``password``: the password itself or
        an ``$__env{}`` reference to it)."""
        ca_cert: pulumi.Output[str | None] = pulumi.Output.from_input(None)
        sslmode = analysis_sslmode(args, conn)
        if conn.ca_secret_name is not None and sslmode.startswith("verify"):
            # Grafana runs in another namespace than the TLS Secret (the user's or cert-manager's, never one
            # this program writes): its CA goes into the provisioning file.
            tls = k8s.core.v1.Secret.get(
                f"{name}-database-ca",
                pulumi.Output.concat(args.namespace, "/", conn.ca_secret_name),
                opts=pulumi.ResourceOptions(parent=self),
            )
            ca_cert = tls.data.apply(lambda data: _decoded(data, CA_KEY))
        content = pulumi.Output.all(conn.read_only_host, password, ca_cert).apply(
            lambda values: postgres_datasource_file(
                uid=ids.analysis_datasource_uid, name=ids.title("TimescaleDB (read-only)"), host=values[0],
                port=conn.port, database=conn.database, user=conn.user, password=values[1],
                sslmode=sslmode, ca_cert=values[2],
            )
        )
        return k8s.core.v1.Secret(
            f"{name}-datasource",
            metadata=k8s.meta.v1.ObjectMetaArgs(namespace=self.grafana_namespace, labels=labels),
            type="Opaque",
            string_data={"timescaledb-datasource.yaml": pulumi.Output.secret(content)},
            opts=pulumi.ResourceOptions(parent=self),
        )


def analysis_sslmode(args: MonitoringArgs, conn: DatabaseConnection) -> str:
    """The declared mode, else ``verify-full`` with TLS (the connection names a CA) and ``disable`` without
    (``require`` would fail against a server without TLS, and with TLS would not check who answers)."""
    if args.analysis_sslmode is not None:
        return args.analysis_sslmode
    return "verify-full" if conn.ca_secret_name is not None else "disable"


def scrape_tls(target: ScrapeTarget) -> dict[str, Any]:
    """An HTTPS endpoint's scheme and TLS settings: verified against the CA and the name its certificate holds."""
    if target.https_ca_secret is None:
        return {}
    return {
        "scheme": "https",
        "tlsConfig": {"ca": {"secret": {"name": target.https_ca_secret, "key": CA_KEY}},
                      "serverName": target.https_server_name},
    }


def _decoded(data: Mapping[str, str] | None, key: str) -> str:
    """One key of a Secret's base64 ``data`` (empty when absent, as under mocks)."""
    encoded = (data or {}).get(key, "")
    return base64.b64decode(encoded).decode() if encoded else ""


def _validate(args: MonitoringArgs) -> None:
    """Raise ``ValueError`` naming the first bad field, before any child exists."""
    if args.mode not in ("install", "existing"):
        raise ValueError(f"mode ({args.mode!r}) must be 'install' or 'existing'")
    chosen, other = ("install", "existing") if args.mode == "install" else ("existing", "install")
    if getattr(args, chosen) is None:
        raise ValueError(f"{chosen} settings are required when mode is {args.mode!r}")
    if getattr(args, other) is not None:
        raise ValueError(f"{other} settings ({getattr(args, other)!r}) must be None when mode is {args.mode!r}")
    settings_type = InstallSettings if chosen == "install" else ExistingSettings
    if not isinstance(getattr(args, chosen), settings_type):
        raise ValueError(f"{chosen} ({getattr(args, chosen)!r}) must be an {settings_type.__name__}")
    getattr(args, chosen).check(chosen)
    if not isinstance(args.alert_thresholds, AlertThresholds):
        raise ValueError(f"alert_thresholds ({args.alert_thresholds!r}) must be an AlertThresholds")
    args.alert_thresholds.check("alert_thresholds")
    if isinstance(args.namespace, str):
        check_dns_label(args.namespace, field="namespace")
    if args.analysis_sslmode is not None and args.analysis_sslmode not in SSL_MODES:
        raise ValueError(f"analysis_sslmode ({args.analysis_sslmode!r}) must be one of {SSL_MODES}")
    if not isinstance(args.scrape_interval, str) or not args.scrape_interval[:-1].isdigit() \
            or args.scrape_interval[-1] not in "sm":
        raise ValueError(f"scrape_interval ({args.scrape_interval!r}) must look like '30s' or '1m'")
    _validate_targets(args.scrape_targets)
    if (args.analysis_datasource is None) != (args.analysis_password is None):
        raise ValueError(
            "analysis_datasource and analysis_password go together: give both (the reader connection and its"
            " password Output) or neither"
        )
    if args.analysis_datasource is not None:
        conn = args.analysis_datasource
        if not 0 < conn.port < 65536:
            raise ValueError(f"analysis_datasource.port ({conn.port}) must be between 1 and 65535")
        for attr in ("database", "user"):
            if not getattr(conn, attr):
                raise ValueError(f"analysis_datasource.{attr} ({getattr(conn, attr)!r}) must not be empty")


def _validate_targets(targets: Sequence[ScrapeTarget]) -> None:
    if not targets:
        raise ValueError("scrape_targets ([]) must name at least one target")
    seen: set[str] = set()
    for i, target in enumerate(targets):
        where = f"scrape_targets[{i}]"
        check_dns_label(target.job, field=f"{where}.job")
        if target.job in seen:
            raise ValueError(f"{where}.job ({target.job!r}) is used by two targets; jobs must be unique")
        seen.add(target.job)
        if isinstance(target.namespace, str):
            check_dns_label(target.namespace, field=f"{where}.namespace")
        check_labels(target.pod_labels, field=f"{where}.pod_labels", allow_empty=False)
        port = target.port_name
        if not isinstance(port, str) or not port or len(port) > _PORT_NAME_MAX or not check_port_name(port):
            raise ValueError(f"{where}.port_name ({port!r}) must be a named container port (IANA_SVC_NAME, <= 15)")
        if (target.https_ca_secret is None) != (target.https_server_name is None):
            raise ValueError(f"{where}: https_ca_secret ({target.https_ca_secret!r}) and https_server_name "
                             f"({target.https_server_name!r}) go together (pods are scraped by IP: name the certificate's)")
        if not isinstance(target.path, str) or not target.path.startswith("/"):
            raise ValueError(f"{where}.path ({target.path!r}) must start with '/'")


def check_port_name(port: str) -> bool:
    """True for an IANA service name: lowercase alphanumerics and single inner '-', with a letter."""
    return (
        all(ch.islower() or ch.isdigit() or ch == "-" for ch in port)
        and any(ch.isalpha() for ch in port)
        and not port.startswith("-") and not port.endswith("-") and "--" not in port
    )
