"""SCRAM-SHA-256 verifiers computed by ``components.shared.scram``, checked against PostgreSQL itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bench.pgserver import PgServer
from components.shared import scram
from tests.reconciler.conftest import can_login


@pytest.mark.parametrize("password", ["Abc123xyz", "s3cr3t-with-punct!@#%", "pässwörd ünïcode"])
def test_postgres_accepts_our_verifier_and_we_accept_postgres_s(server: PgServer, password: str) -> None:
    ours = scram.scram_verifier(password)
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute("CREATE ROLE ours LOGIN")
        conn.execute(f"ALTER ROLE ours PASSWORD '{ours}'")
        conn.execute("CREATE ROLE theirs LOGIN")
        conn.execute("SELECT set_config('password_encryption', 'scram-sha-256', false)")
        conn.execute(psycopg.sql.SQL("ALTER ROLE theirs PASSWORD {}").format(psycopg.sql.Literal(password)))
        stored = dict(conn.execute("SELECT rolname, rolpassword FROM pg_authid WHERE rolname IN ('ours', 'theirs')"))
    assert stored["ours"] == ours, "PostgreSQL must store the verifier as given, not hash it again"
    assert can_login(server, "ours", password)
    assert not can_login(server, "ours", password + "x")
    assert scram.verifier_matches(stored["theirs"], password)
    assert not scram.verifier_matches(stored["theirs"], password.upper())


def test_verifier_format_and_salt() -> None:
    one, two = scram.scram_verifier("pw"), scram.scram_verifier("pw")
    assert one.startswith("SCRAM-SHA-256$4096:") and one != two, "each verifier gets a fresh salt"
    assert scram.verifier_matches(one, "pw") and scram.verifier_matches(two, "pw")
    fixed = scram.scram_verifier("pw", salt=b"0123456789abcdef", iterations=4096)
    assert fixed == scram.scram_verifier("pw", salt=b"0123456789abcdef", iterations=4096)
    for not_scram in (None, "", "md5abcdef", "SCRAM-SHA-256$x", "SCRAM-SHA-256$4096:@@$a:b"):
        assert not scram.verifier_matches(not_scram, "pw")
    with pytest.raises(ValueError, match="control characters"):
        scram.scram_verifier("tab\there")


def test_cli_prints_only_the_verifier(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("FromASecret42\n")
    # Alone in its directory, as mounted in the pod (beside components/shared/types.py it would shadow 'types').
    script = tmp_path / "scram.py"
    shutil.copy(scram.__file__, script)
    result = subprocess.run([sys.executable, str(script), str(secret)], capture_output=True, text=True, timeout=30, check=True)
    verifier = result.stdout.strip()
    assert "FromASecret42" not in result.stdout
    assert scram.verifier_matches(verifier, "FromASecret42"), "the trailing newline of the file is not part of the password"
