"""timescale-k8s component library: TimescaleDB, Autoscaler, Workload and Monitoring components."""

__version__ = "0.1.0"
"""The package version (kept equal to pyproject.toml's by tests/packaging)."""
