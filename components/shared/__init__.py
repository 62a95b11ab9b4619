"""What the components share: Kubernetes helpers (labels, security contexts, pod specs, quantities, images)
and the types that cross component boundaries (connections, scrape and scale targets, resources)."""

from .types import ConnectionSecretKeys, DatabaseConnection, Resources, ScaleTarget, ScrapeTarget

__all__ = ["ConnectionSecretKeys", "DatabaseConnection", "Resources", "ScaleTarget", "ScrapeTarget"]
