"""The benchmarks' database: a throwaway TimescaleDB when this machine has one installed, else plain PostgreSQL.

TimescaleDB is looked for in Debian's PostgreSQL 15 (`/usr/lib/postgresql/15`, extension library
`timescaledb.so` in its lib dir); nothing is downloaded or built here. `--flavour` forces a choice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgserver import PgServer

DEBIAN_PG = Path("/usr/lib/postgresql/15")
FLAVOURS = ("auto", "timescaledb", "postgresql")


def timescaledb_installed() -> bool:
    """True when Debian's PostgreSQL 15 and a TimescaleDB build for it are installed."""
    return (DEBIAN_PG / "bin" / "postgres").exists() and (DEBIAN_PG / "lib" / "timescaledb.so").exists()


def resolve(flavour: str) -> str:
    """`auto` -> `timescaledb` when installed, else `postgresql`; an explicit flavour must be available."""
    if flavour == "auto":
        return "timescaledb" if timescaledb_installed() else "postgresql"
    if flavour == "timescaledb" and not timescaledb_installed():
        raise SystemExit(f"--flavour timescaledb: no timescaledb.so under {DEBIAN_PG / 'lib'}")
    return flavour


def server(flavour: str, extra_conf: dict[str, str] | None = None, base_dir: Path | None = None) -> PgServer:
    """An un-started PgServer of `flavour` (already resolved), its data directory under ``base_dir`` (default: the
    system's temporary directory)."""
    conf = {"max_wal_size": "4GB", "checkpoint_timeout": "15min", "work_mem": "16MB"}
    if flavour == "timescaledb":
        conf.update({"shared_preload_libraries": "'timescaledb'", "timescaledb.telemetry_level": "off",
                     "max_worker_processes": "16"})
        conf.update(extra_conf or {})
        return PgServer(base_dir, extra_conf=conf, bin_dir=DEBIAN_PG / "bin")
    conf.update(extra_conf or {})
    return PgServer(base_dir, extra_conf=conf)


def add_flavour_option(parser: argparse.ArgumentParser) -> None:
    """`--flavour auto|timescaledb|postgresql`."""
    parser.add_argument("--flavour", choices=FLAVOURS, default="auto",
                        help="database flavour (auto: TimescaleDB when installed, else plain PostgreSQL)")
