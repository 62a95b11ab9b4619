"""The Monitoring component: kube-prometheus-stack install or an existing Operator, monitors, rules, dashboards."""

from components.monitoring.component import Monitoring, MonitoringArgs
from components.monitoring.settings import ExistingSettings, InstallSettings

__all__ = ["ExistingSettings", "InstallSettings", "Monitoring", "MonitoringArgs"]
