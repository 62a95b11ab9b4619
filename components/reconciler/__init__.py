"""The Reconciler component: an in-cluster Job that makes a running TimescaleDB match its declaration
(DCS parameters with safe restarts, role passwords as SCRAM verifiers, extension updates)."""

from .component import Reconciler, ReconcilerArgs, check_args

__all__ = ["Reconciler", "ReconcilerArgs", "check_args"]
