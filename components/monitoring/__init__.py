"""The Monitoring component: kube-prometheus-stack install or an existing Operator, monitors, rules, dashboards."""

from .component import Monitoring, MonitoringArgs
from .settings import ExistingSettings, InstallSettings

__all__ = ["ExistingSettings", "InstallSettings", "Monitoring", "MonitoringArgs"]
