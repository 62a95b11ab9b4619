"""Backup and restore timings with real pgBackRest, PostgreSQL 15 and a TLS S3 server (moto), on loopback.

Runs the same flow as ``tests/backup/test_pitr.py`` (its helpers, the component's rendered config):
the agent takes a full and a differential backup of a table of N rows, then a point-in-time restore and
a restore of the latest state, each into a new data directory. Prints the figures; asserts nothing.

    .venv/bin/python bench/backup.py --rows 500000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.backup.test_pitr import phase_counts, restore, source_cluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000, help="base rows in the source table")
    args = parser.parse_args()
    with source_cluster(args.rows) as source:
        for name, target in (("pitr", {"time": source.target_time}), ("latest", {"latest": True})):
            cluster = restore(source, name, target)
            try:
                print(f"restore {name}: {phase_counts(cluster)}")
            finally:
                cluster.stop()
        for key, seconds in source.timings.items():
            print(f"{key}: {seconds:.2f}s")


if __name__ == "__main__":
    main()
