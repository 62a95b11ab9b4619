"""PostgreSQL's and TimescaleDB's parameters, as real servers report them in ``pg_settings``.

One JSON file per PostgreSQL major (``pg<major>.json``) and one for the pinned TimescaleDB
(``timescaledb-<version>.json``), written by ``scripts/pg_catalog.py``; a test compares them with the
servers the tests start. A major without its own file but between two catalogued ones (17, between 16
and 18: no PostgreSQL 17 server could be had here) is *bridged*: a name is known when either neighbour
knows it, with the older neighbour's type and bounds first; :data:`Catalog.bridged_from` says so, and
the checks warn. A major outside the catalogued range has no catalog: the checks refuse it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CATALOG_DIR = Path(__file__).resolve().parent
FIELDS = ("vartype", "unit", "enumvals", "min_val", "max_val", "context", "boot_val")
"""The ``pg_settings`` columns each entry keeps."""
TIMESCALEDB_VERSION = "2.28.3"
"""The TimescaleDB release whose ``timescaledb.*`` settings the catalog holds."""


@dataclass(frozen=True)
class Catalog:
    """Every parameter of one PostgreSQL major (plus TimescaleDB's), keyed by name."""

    major: int
    parameters: Mapping[str, Mapping[str, object]]
    bridged_from: tuple[int, ...] = ()
    """The neighbouring majors a bridged catalog was made from; empty for a real one."""
    server_version: str = ""
    """``SHOW server_version`` of the server a real catalog was read from (e.g. ``15.20 (Debian ...)``)."""


def _read(name: str) -> dict[str, object]:
    return json.loads((CATALOG_DIR / name).read_text(encoding="utf-8"))


def catalogued_majors() -> tuple[int, ...]:
    """The majors with a ``pg<major>.json`` of their own, ascending."""
    return tuple(sorted(int(path.stem[2:]) for path in CATALOG_DIR.glob("pg*.json")))


def timescaledb_parameters() -> Mapping[str, Mapping[str, object]]:
    """TimescaleDB's ``timescaledb.*`` settings of :data:`TIMESCALEDB_VERSION`."""
    return _read(f"timescaledb-{TIMESCALEDB_VERSION}.json")["parameters"]  # type: ignore[return-value]


@cache
def catalog(major: int) -> Catalog | None:
    """The catalog for ``major`` (real or bridged), or None when no catalogued major is on both sides."""
    majors = catalogued_majors()
    extension = timescaledb_parameters()
    if major in majors:
        stored = _read(f"pg{major}.json")
        return Catalog(major, {**stored["parameters"], **extension},  # type: ignore[dict-item]
                       server_version=str(stored.get("server_version", "")))
    older = [m for m in majors if m < major]
    newer = [m for m in majors if m > major]
    if not older or not newer:
        return None
    below, above = older[-1], newer[0]
    merged = {**_read(f"pg{above}.json")["parameters"], **_read(f"pg{below}.json")["parameters"]}  # type: ignore[dict-item]
    return Catalog(major, {**merged, **extension}, bridged_from=(below, above))
