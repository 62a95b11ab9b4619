"""tsflow: the data generator and the anomaly consumer that run next to TimescaleDB."""

__version__ = "0.1.0"
