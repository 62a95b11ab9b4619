"""Regenerate the PostgreSQL parameter catalog (``components/timescaledb/catalog/*.json``) from real servers.

Each ``--bin DIR`` is a PostgreSQL installation's ``bin`` directory: the script starts a throwaway server
from it (``bench/pgserver.py``), reads ``pg_settings`` and writes ``pg<major>.json``. ``--timescaledb DIR``
starts one more server from that installation with ``shared_preload_libraries = timescaledb`` and writes
``timescaledb-<version>.json`` with the extension's own ``timescaledb.*`` rows.

    python scripts/pg_catalog.py --bin /usr/lib/postgresql/15/bin --bin <wheel>/pginstall/bin \\
        --timescaledb /usr/lib/postgresql/15/bin
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.pgserver import PgServer  # noqa: E402
from components.timescaledb.catalog import CATALOG_DIR, FIELDS  # noqa: E402

_QUERY = f"SELECT name, {', '.join(FIELDS)} FROM pg_settings ORDER BY name"


def read_settings(server: PgServer, *, prefix: str = "", dbname: str = "postgres") -> tuple[str, dict[str, dict[str, object]]]:
    """The server's ``server_version`` and its ``pg_settings`` rows (only names starting with ``prefix``).

    TimescaleDB's loader defines only a few settings; the versioned library, loaded in a database that
    has the extension, defines the rest, so read those from such a database (``dbname``)."""
    with psycopg.connect(server.dsn(dbname)) as conn:
        version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
        rows = conn.execute(_QUERY).fetchall()
    return version, {row[0]: dict(zip(FIELDS, row[1:])) for row in rows if row[0].startswith(prefix)}


def timescaledb_version(server: PgServer, dbname: str) -> str:
    """The installed TimescaleDB extension's version (created in a scratch database ``dbname``)."""
    with psycopg.connect(server.create_database(dbname), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION timescaledb")
        return str(conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0])  # type: ignore[index]


def write(name: str, document: dict[str, object]) -> Path:
    """Write ``document`` as ``CATALOG_DIR/name`` (sorted, one key a line, so diffs stay readable)."""
    path = CATALOG_DIR / name
    path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    """Write one catalog per ``--bin`` and one TimescaleDB catalog per ``--timescaledb``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", action="append", default=[], type=Path, help="a PostgreSQL bin directory")
    parser.add_argument("--timescaledb", action="append", default=[], type=Path,
                        help="a bin directory whose installation has the timescaledb library")
    options = parser.parse_args(argv)
    for bin_dir in options.bin:
        with PgServer(bin_dir=bin_dir) as server:
            version, settings = read_settings(server)
        major = int(version.split(".")[0])
        print(write(f"pg{major}.json", {"major": major, "server_version": version, "parameters": settings}))
    for bin_dir in options.timescaledb:
        with PgServer(bin_dir=bin_dir, extra_conf={"shared_preload_libraries": "'timescaledb'"}) as server:
            extension = timescaledb_version(server, "catalog")
            version, settings = read_settings(server, prefix="timescaledb.", dbname="catalog")
        print(write(f"timescaledb-{extension}.json",
                    {"timescaledb_version": extension, "server_version": version, "parameters": settings}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
