"""timescale-k8s component library: TimescaleDB, Autoscaler, Pooler, Reconciler, Workload, MigrationJob, Monitoring and
StackNamespace components, and the component provider that serves them to other Pulumi languages."""

__version__ = "0.2.0"
"""The package version (kept equal to pyproject.toml's by tests/packaging)."""
