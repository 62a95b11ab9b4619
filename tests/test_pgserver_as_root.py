"""The throwaway PostgreSQL starts when the tests run as root from a clone other users cannot enter.

PostgreSQL refuses to run as root, so ``bench.pgserver`` runs it as an unprivileged user; that user
must still reach the server binaries when they sit inside a ``.venv`` under a mode-0700 directory
(a clone under ``/root`` or in a ``mktemp -d`` folder).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bench import pgserver

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="only root hands the server to another user")


@pytest.fixture
def wheel_in_private_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The wheel's binaries copied under a fresh mode-0700 directory, as in a clone under /root."""
    private = Path(tempfile.mkdtemp(prefix="private-clone-"))
    private.chmod(0o700)
    package = pgserver.POSTGRES_BIN_PATH.parent.parent
    for tree in (package / "pginstall", package.parent / f"{package.name}.libs"):
        shutil.copytree(tree, private / "site-packages" / tree.relative_to(package.parent), symlinks=True)
    bin_dir = private / "site-packages" / package.name / "pginstall" / "bin"
    monkeypatch.setattr(pgserver, "POSTGRES_BIN_PATH", bin_dir)
    monkeypatch.setattr(pgserver, "_server_bin_dirs", {}, raising=False)
    try:
        yield bin_dir
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_server_starts_from_binaries_inside_a_private_directory(wheel_in_private_dir: Path) -> None:
    server = pgserver.PgServer()
    try:
        server.init().start()
        with psycopg.connect(server.dsn()) as conn:
            assert conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0] >= 150000
        assert not server.bin_dir.is_relative_to(wheel_in_private_dir.parents[3])
    finally:
        server.cleanup()
