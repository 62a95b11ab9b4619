"""Pure builders of the reconciler Job: the program files, the declaration, the revision in the Job's name.

Re-run exactly when the declaration changes: the Job's name carries a revision, a hash of everything
the run depends on (the declaration's JSON, the password fingerprint, the Secrets it reads, the program's
source, the image and the Job's own settings). Same inputs give the same name and an identical object, so
``pulumi up`` leaves the finished Job alone; any change gives a new name, so Pulumi creates a new Job
(which runs) and deletes the old one (create-before-delete: the names differ).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.reconciler.tsreconcile.desired import Desired, RoleSpec
from components.shared.types import ReconcileTarget, SecretFile

REPO_ROOT = Path(__file__).resolve().parents[2]
PROGRAM_DIR = "/opt/tsreconcile"
"""Where the program's files are mounted; it is the container's PYTHONPATH."""
SECRETS_DIR = "/etc/tsreconcile/secrets"
MODULE = "components.reconciler.tsreconcile"
REVISION_LENGTH = 10


@dataclass(frozen=True)
class ProgramFile:
    """One source file of the program: its ConfigMap key and its path below ``PROGRAM_DIR``."""

    key: str
    path: str
    text: str


def program_files() -> list[ProgramFile]:
    """The tsreconcile package and the one shared module it imports (``components.shared.scram``).

    They keep their repository paths, so the same imports work in the tests and in the pod, where
    ``components`` and ``components/shared`` are namespace packages (no ``__init__`` is shipped: the
    repository's pull in Pulumi).
    """
    sources = [REPO_ROOT / "components" / "shared" / "scram.py",
               *sorted((REPO_ROOT / "components" / "reconciler" / "tsreconcile").glob("*.py"))]
    files = []
    for source in sources:
        relative = source.relative_to(REPO_ROOT).as_posix()
        files.append(ProgramFile(key=relative.replace("/", "."), path=relative, text=source.read_text(encoding="utf-8")))
    return files


def secret_file_path(role: str) -> str:
    """Where a role's password is mounted in the reconciler pod."""
    return f"{SECRETS_DIR}/role-{role}"


SUPERUSER_FILE = f"{SECRETS_DIR}/superuser"
RESTAPI_FILE = f"{SECRETS_DIR}/restapi"


def mounted_secrets(target: ReconcileTarget) -> list[tuple[SecretFile, str]]:
    """(Secret key, path) of every password the reconciler reads, in a stable order."""
    return [
        (target.superuser_password, SUPERUSER_FILE),
        (target.restapi_password, RESTAPI_FILE),
        *[(target.role_passwords[role], secret_file_path(role)) for role in sorted(target.role_passwords)],
    ]


def desired_state(target: ReconcileTarget, *, patroni_url: str, timeout_seconds: int) -> Desired:
    """The declaration for one database, with passwords as mounted file paths (never values)."""
    return Desired(
        patroni_url=patroni_url,
        superuser=target.superuser,
        superuser_password_file=SUPERUSER_FILE,
        restapi_user=target.restapi_user,
        restapi_password_file=RESTAPI_FILE,
        roles=tuple(
            RoleSpec(role=role, password_file=secret_file_path(role),
                     create_options="LOGIN REPLICATION" if role == target.replication_user else "LOGIN")
            for role in sorted(target.role_passwords)
        ),
        extensions=tuple(target.extensions),
        dcs_parameters=dict(sorted(target.dcs_parameters.items())),
        managed_dcs_parameters=tuple(sorted(target.managed_dcs_parameters)),
        postgres_major=target.postgres_major,
        timeout_seconds=timeout_seconds,
    )


def revision(*, desired_json: str, credentials_version: str, secret_names: list[str], job_settings: dict[str, Any]) -> str:
    """A short hash of everything a run depends on; it names the Job."""
    program = [(f.path, hashlib.sha256(f.text.encode()).hexdigest()) for f in program_files()]
    material = json.dumps(
        {"desired": desired_json, "credentials": credentials_version, "secrets": secret_names,
         "program": program, "job": job_settings},
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:REVISION_LENGTH]
