"""The tsflow workloads: generator and consumer Deployments, and the schema migration Job they wait for."""

from .migration import MigrationJob, MigrationJobArgs
from .workload import Workload, WorkloadArgs

__all__ = ["MigrationJob", "MigrationJobArgs", "Workload", "WorkloadArgs"]
