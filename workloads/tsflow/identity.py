"""Generator identities that survive pod restarts: leases in the database.

A Deployment's pods get a new random name at every start; an identity derived from it would create new
series (device ids are prefixed by the generator id) and a new ledger sequence each time. Instead each
generator leases an identity in `generator_leases`:

- `--generator-id auto` (the default) takes the lowest `gen-<n>` whose lease is free or expired, or the
  next number; so N replicas use gen-0 .. gen-<N-1> whatever their pod names, and a restarted pod takes
  over the identity its predecessor released (on shutdown) or let expire (on a crash).
- An explicit `--generator-id` is leased too, so two processes can never write under one identity.

Every batch renews the lease in the same transaction as its ledger row (one round trip, `LEDGER_SQL`),
which fences a generator that lost its lease: its batch fails instead of colliding with the new holder's.
"""

from __future__ import annotations

import os
import secrets
import socket

import psycopg

AUTO = "auto"
PREFIX = "gen-"

SCHEMA = """
CREATE TABLE IF NOT EXISTS generator_leases (
    generator_id text        PRIMARY KEY,
    holder       text        NOT NULL,
    expires_at   timestamptz NOT NULL
)
"""

_TAKE = """
INSERT INTO generator_leases (generator_id, holder, expires_at)
VALUES (%(id)s, %(holder)s, now() + make_interval(secs => %(ttl)s))
ON CONFLICT (generator_id) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
WHERE generator_leases.expires_at < now() OR generator_leases.holder = EXCLUDED.holder
RETURNING generator_id
"""

_FIRST_FREE = f"""
SELECT n FROM (
    SELECT substr(generator_id, {len(PREFIX) + 1})::integer AS n, holder, expires_at
    FROM generator_leases WHERE generator_id ~ '^{PREFIX}[0-9]{{1,9}}$'
) leases
WHERE expires_at < now() OR holder = %(holder)s
UNION ALL
SELECT coalesce(max(substr(generator_id, {len(PREFIX) + 1})::integer) + 1, 0)
FROM generator_leases WHERE generator_id ~ '^{PREFIX}[0-9]{{1,9}}$'
ORDER BY 1
LIMIT 1
"""

LEDGER_SQL = """
WITH lease AS (
    UPDATE generator_leases SET holder = %(holder)s, expires_at = now() + make_interval(secs => %(ttl)s)
    WHERE generator_id = %(generator_id)s AND (holder = %(holder)s OR expires_at < now())
    RETURNING 1
), ledger AS (
    INSERT INTO ingest_batches (batch_id, generator_id, seq, row_count)
    SELECT %(batch_id)s, %(generator_id)s, %(seq)s, %(rows)s WHERE EXISTS (SELECT 1 FROM lease)
    ON CONFLICT (batch_id) DO NOTHING
    RETURNING 1
)
SELECT EXISTS (SELECT 1 FROM lease), EXISTS (SELECT 1 FROM ledger)
"""
"""Renew the lease and add the ledger row: (lease held, row is new)."""

_RELEASE = "UPDATE generator_leases SET expires_at = now() WHERE generator_id = %s AND holder = %s"


class LeaseLost(Exception):
    """Another live process holds this generator's identity; writing on would collide with it."""


def new_holder() -> str:
    """A token unique to this process: host name, pid and randomness."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def claim(conn: psycopg.Connection, requested: str, holder: str, ttl_s: float) -> str | None:
    """Lease `requested` (or, for `auto`, the lowest free gen-<n>); None while another live holder has it.

    Claimers are serialized by a table lock held for this short transaction, so two `auto` claims never
    pick the same number.
    """
    with conn.transaction():
        conn.execute("LOCK TABLE generator_leases IN SHARE ROW EXCLUSIVE MODE")
        wanted = requested
        if requested == AUTO:
            row = conn.execute(_FIRST_FREE, {"holder": holder}).fetchone()
            assert row is not None  # the UNION's second branch always yields a row
            wanted = f"{PREFIX}{row[0]}"
        taken = conn.execute(_TAKE, {"id": wanted, "holder": holder, "ttl": ttl_s}).fetchone()
    return None if taken is None else str(taken[0])


def release(conn: psycopg.Connection, generator_id: str, holder: str) -> None:
    """Let the next process take the identity at once (a clean shutdown)."""
    with conn.transaction():
        conn.execute(_RELEASE, (generator_id, holder))
