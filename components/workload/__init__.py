"""The tsflow workloads: generator and consumer Deployments, and the schema migration Job they wait for."""

from components.workload.migration import MigrationJob, MigrationJobArgs
from components.workload.workload import Workload, WorkloadArgs

__all__ = ["MigrationJob", "MigrationJobArgs", "Workload", "WorkloadArgs"]
