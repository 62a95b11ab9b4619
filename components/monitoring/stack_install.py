"""Helm values for kube-prometheus-stack and the Grafana data source provisioning file.

Values are nested dicts in the chart's own (camelCase) key style because they are the chart's API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi
import yaml

from .dashboards.common import POSTGRES_DS_TYPE
from .settings import INSTALL_DASHBOARD_LABEL, INSTALL_DATASOURCE_LABEL, InstallSettings
from ..shared.quantity import byte_size
from ..shared.types import ConnectionSecretKeys, Resources

GRAFANA_ADMIN_USER_KEY = "admin-user"
GRAFANA_ADMIN_PASSWORD_KEY = "admin-password"
GRAFANA_FOLDER_ANNOTATION = "grafana_folder"
READER_PASSWORD_ENV = "TIMESCALEDB_READER_PASSWORD"
"""Environment variable of the Grafana container holding the read-only role's password (install mode)."""
RETENTION_SIZE_SHARE = 0.85
"""Prometheus deletes old blocks once the TSDB reaches this share of its volume, so it never fills it."""


def resources_values(resources: Resources) -> dict[str, Any]:
    """A ``Resources`` as the ``resources:`` block charts take."""
    limits = {"memory": resources.memory_limit or resources.memory_request}
    if resources.cpu_limit is not None:
        limits["cpu"] = resources.cpu_limit
    return {"requests": {"cpu": resources.cpu_request, "memory": resources.memory_request}, "limits": limits}


def retention_size(storage_size: str) -> str:
    """``retentionSize`` for a volume of ``storage_size`` (Prometheus size units are base 2: 'MB' = MiB)."""
    mebibytes = int(byte_size(storage_size, field="prometheus_storage_size") * RETENTION_SIZE_SHARE) // 2**20
    return f"{mebibytes}MB"


def env_reference(variable: str) -> str:
    """Grafana's provisioning-file expansion of an environment variable of its own container."""
    return f"$__env{{{variable}}}"


def kube_prometheus_stack_values(
    settings: InstallSettings,
    *,
    admin_secret_name: pulumi.Input[str],
    grafana_pod_labels: Mapping[str, str],
    grafana_namespace: pulumi.Input[str],
    reader_password_secret: pulumi.Input[str] | None = None,
) -> dict[str, Any]:
    """Values that make the stack pick up our monitors/rules/dashboards and keep secrets out of values.

    Grafana's sidecars watch only ``grafana_namespace`` (the release's own, where we put our dashboards
    and data source) and its RBAC is a namespaced Role there (``rbac.namespaced``), not a ClusterRole
    reading every Secret of the cluster. ``reader_password_secret`` (a Secret in that namespace) becomes
    the container's ``READER_PASSWORD_ENV``, which our data source file expands.
    """
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": settings.prometheus_storage_size}},
    }
    if settings.storage_class:
        claim_spec["storageClassName"] = settings.storage_class
    dashboard_key, dashboard_value = INSTALL_DASHBOARD_LABEL
    datasource_key, datasource_value = INSTALL_DATASOURCE_LABEL
    return {
        "prometheus": {
            "prometheusSpec": {
                "retention": settings.prometheus_retention,
                "retentionSize": retention_size(settings.prometheus_storage_size),
                "resources": resources_values(settings.prometheus_resources),
                "storageSpec": {"volumeClaimTemplate": {"spec": claim_spec}},
                # Select monitors and rules from every namespace without Helm release labels.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
            },
        },
        "grafana": {
            "admin": {
                "existingSecret": admin_secret_name,
                "userKey": GRAFANA_ADMIN_USER_KEY,
                "passwordKey": GRAFANA_ADMIN_PASSWORD_KEY,
            },
            "resources": resources_values(settings.grafana_resources),
            # Lets a database NetworkPolicy that admits reader clients by label admit Grafana too.
            "podLabels": dict(grafana_pod_labels),
            "rbac": {"namespaced": True},
            **({"envValueFrom": {READER_PASSWORD_ENV: {"secretKeyRef": {
                "name": reader_password_secret, "key": ConnectionSecretKeys.PASSWORD,
            }}}} if reader_password_secret is not None else {}),
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": dashboard_key,
                    "labelValue": dashboard_value,
                    "searchNamespace": [grafana_namespace],
                    "folderAnnotation": GRAFANA_FOLDER_ANNOTATION,
                    "provider": {"foldersFromFilesStructure": True},
                },
                "datasources": {
                    "enabled": True,
                    "label": datasource_key,
                    "labelValue": datasource_value,
                    "searchNamespace": [grafana_namespace],
                    # The chart's Prometheus data source is a ConfigMap, ours a Secret: watch both.
                    "resource": "both",
                },
            },
        },
    }


def postgres_datasource_file(
    *, uid: str, name: str, host: str, port: int, database: str, user: str, password: str, sslmode: str,
    ca_cert: str | None = None,
) -> str:
    """A Grafana provisioning file for a read-only TimescaleDB data source (goes into a Secret).

    With ``ca_cert`` (PEM) Grafana verifies the server against it (``tlsConfigurationMethod: file-content``).
    """
    datasource = {
        "name": name,
        "uid": uid,
        "type": POSTGRES_DS_TYPE,
        "access": "proxy",
        "url": f"{host}:{port}",
        "user": user,
        "editable": False,
        "jsonData": {
            "database": database,
            "sslmode": sslmode,
            "timescaledb": True,
            "postgresVersion": 1500,
            "maxOpenConns": 5,
            "maxIdleConns": 2,
            "connMaxLifetime": 14400,
        },
        "secureJsonData": {"password": password},
    }
    if ca_cert is not None:
        datasource["jsonData"]["tlsConfigurationMethod"] = "file-content"
        datasource["secureJsonData"]["tlsCACert"] = ca_cert
    return yaml.safe_dump({"apiVersion": 1, "datasources": [datasource]}, sort_keys=False)
