"""timescale-k8s component library: TimescaleDB, Autoscaler, Workload and Monitoring components."""
