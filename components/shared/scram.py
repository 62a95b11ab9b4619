"""SCRAM-SHA-256 password verifiers, computed client-side so no cleartext password reaches the server.

PostgreSQL stores ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (RFC 5802/7677; the
format of ``pg_authid.rolpassword``) and accepts that string in ``ALTER ROLE ... PASSWORD '<verifier>'``
as an already-encrypted password. Sending the verifier instead of the password keeps the password out
of statement text, so out of ``pg_stat_statements``, server logs and client history.

Standard library only, Python 3.8+: this file also runs inside the ``timescaledb-ha`` image (bootstrap
``post_init`` and the reconciler), where it is mounted from a ConfigMap and run as
``python3 scram.py <password-file>`` to print a verifier.

Normalization: PostgreSQL SASLpreps the password and falls back to the raw bytes when that fails. The
component's generated passwords are ASCII letters and digits, for which SASLprep is the identity. Other
passwords are NFKC-normalized (the core of SASLprep); exotic code points that SASLprep maps or prohibits
are not handled and are refused rather than silently producing a verifier that would not match.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys
import unicodedata

DEFAULT_ITERATIONS = 4096
"""PostgreSQL's default ``scram_iterations``."""
SALT_BYTES = 16
"""PostgreSQL's salt length."""
PREFIX = "SCRAM-SHA-256"


def _normalized(password: str) -> bytes:
    if not password:
        raise ValueError("a SCRAM password must not be empty")
    if password.isascii():
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in password):
            raise ValueError("the password contains ASCII control characters, which SASLprep prohibits")
        return password.encode()
    normalized = unicodedata.normalize("NFKC", password)
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Co", "Cs", "Zl", "Zp") for ch in normalized):
        raise ValueError("the password contains characters SASLprep maps or prohibits; use printable characters")
    return normalized.encode()


def _keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _normalized(password), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    return stored_key, server_key


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS) -> str:
    """The verifier PostgreSQL would store for ``password`` (a fresh random salt unless one is given)."""
    if iterations < 1:
        raise ValueError(f"iterations ({iterations}) must be >= 1")
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    stored_key, server_key = _keys(password, salt, iterations)
    return f"{PREFIX}${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def verifier_matches(verifier: str | None, password: str) -> bool:
    """True if ``verifier`` (a ``pg_authid.rolpassword`` value) accepts ``password``.

    None, MD5 hashes and malformed values do not match, so the caller re-sets them as SCRAM verifiers.
    """
    if not verifier or not verifier.startswith(PREFIX + "$"):
        return False
    try:
        _, iterations_salt, keys = verifier.split("$")
        iterations, salt = iterations_salt.split(":")
        stored_key, server_key = keys.split(":")
        expected = _keys(password, base64.b64decode(salt, validate=True), int(iterations))
        return hmac.compare_digest(_b64(expected[0]), stored_key) and hmac.compare_digest(_b64(expected[1]), server_key)
    except ValueError:
        return False


def read_password(path: str) -> str:
    """A password from a mounted Secret file (one trailing newline tolerated, as ``kubectl create`` adds)."""
    with open(path, encoding="utf-8") as handle:
        text = handle.read()
    return text[:-1] if text.endswith("\n") else text


def main(argv: list[str]) -> int:
    """``python3 scram.py FILE``: print the verifier of the password in FILE (never the password)."""
    if len(argv) != 1:
        print("usage: scram.py PASSWORD_FILE", file=sys.stderr)
        return 2
    print(scram_verifier(read_password(argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
