"""The committed parameter catalog matches the PostgreSQL servers the tests start (same major: same names and bounds)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.pgserver import PgServer, system_bin_dir
from components.timescaledb import catalog as cat
from scripts.pg_catalog import read_settings

COMPARED = ("vartype", "unit", "enumvals", "min_val", "max_val", "context")
"""What a check depends on (``boot_val`` differs between builds, e.g. Debian's socket directory)."""

# None: PgServer's default, the wheel's binaries (or their copy that the server's OS user can run, when the
# checkout sits in a directory other users cannot enter).
_SERVERS: dict[str, Path | None] = {"wheel": None, "debian": system_bin_dir()}


@pytest.fixture(scope="module", params=sorted(_SERVERS))
def server_settings(request: pytest.FixtureRequest) -> Iterator[tuple[int, dict[str, dict[str, object]]]]:
    bin_dir: Path | None = _SERVERS[request.param]
    if request.param == "debian" and bin_dir is None:
        pytest.skip("no Debian PostgreSQL installed (./scripts/test installs it)")
    with PgServer(bin_dir=bin_dir) as server:
        version, settings = read_settings(server)
    yield version, settings


def minor_of(version: str) -> int:
    """The minor release of a ``server_version`` such as ``15.18 (Debian 15.18-0+deb12u1)``."""
    return int(version.split()[0].split(".")[1])


def test_catalog_matches_the_server_of_its_major(server_settings: tuple[str, dict[str, dict[str, object]]]) -> None:
    version, settings = server_settings
    major = int(version.split(".")[0])
    assert major in cat.catalogued_majors(), f"PostgreSQL {major} runs in the tests but has no catalog; run scripts/pg_catalog.py"
    stored = cat.catalog(major)
    assert stored is not None and not stored.bridged_from
    postgres_names = {name for name in stored.parameters if not name.startswith("timescaledb.")}
    running, catalogued = minor_of(version), minor_of(stored.server_version)
    # Minor releases add parameters (never remove one), so a server older than the catalog's may lack a few.
    if running < catalogued:
        assert set(settings) <= postgres_names, (f"{version} has parameters the catalog of {stored.server_version} "
                                                 f"lacks: {sorted(set(settings) - postgres_names)}")
    else:
        assert postgres_names == set(settings), (f"catalog {stored.server_version}, server {version}: "
                                                 f"{sorted(postgres_names ^ set(settings))}; run scripts/pg_catalog.py")
    assert len(settings) > 300
    for name, row in settings.items():
        if name == "server_version_num" and running != catalogued:
            continue  # its bounds are the release's own number
        assert {k: stored.parameters[name][k] for k in COMPARED} == {k: row[k] for k in COMPARED}, name


def test_a_major_between_two_catalogued_ones_is_bridged_and_one_outside_has_none() -> None:
    majors = cat.catalogued_majors()
    assert cat.catalog(majors[0] - 1) is None and cat.catalog(majors[-1] + 1) is None
    gaps = [m for m in range(majors[0], majors[-1]) if m not in majors]
    for major in gaps:
        bridged = cat.catalog(major)
        assert bridged is not None and bridged.bridged_from[0] < major < bridged.bridged_from[1]
        assert "shared_buffers" in bridged.parameters and "timescaledb.max_background_workers" in bridged.parameters


def test_timescaledb_settings_come_from_the_pinned_release() -> None:
    settings = cat.timescaledb_parameters()
    assert len(settings) > 50 and all(name.startswith("timescaledb.") for name in settings)
    assert settings["timescaledb.max_background_workers"]["vartype"] == "integer"
