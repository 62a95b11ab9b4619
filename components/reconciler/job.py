"""Pure builders of the reconciler Job: the program files, the declaration, the revision in the Job's name.

Re-run exactly when the declaration changes: the Job's name carries a revision, a hash of everything
the run depends on (the declaration's JSON, the Secrets it reads, the program's source, the image and the
Job's own settings). Password rotations do not re-run it: the role agent in the member pods applies them.
Same inputs give the same name and an identical object, so ``pulumi up`` leaves the finished Job alone; any change gives a new name, so Pulumi creates a new Job
(which runs) and deletes the old one (create-before-delete: the names differ).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .tsreconcile.desired import Desired
from ..shared.types import ReconcileTarget, SecretFile

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
"""The component package's directory (``components/`` here, ``timescale_k8s/`` when installed)."""
SHIPPED_PACKAGE = "components"
"""The package name the program has in the pod, whatever the name it is installed under here."""
PROGRAM_DIR = "/opt/tsreconcile"
"""Where the program's files are mounted; it is the container's PYTHONPATH."""
SECRETS_DIR = "/etc/tsreconcile/secrets"
MODULE = f"{SHIPPED_PACKAGE}.reconciler.tsreconcile"
AGENT_MODULE = f"{MODULE}.agent"
"""The role agent's entry point (a sidecar of the member pods, see ``components.timescaledb.role_agent``)."""
REVISION_LENGTH = 10


@dataclass(frozen=True)
class ProgramFile:
    """One source file of the program: its ConfigMap key and its path below ``PROGRAM_DIR``."""

    key: str
    path: str
    text: str


def program_files() -> list[ProgramFile]:
    """The tsreconcile package and the one shared module it imports (``components.shared.scram``).

    They keep their repository paths (below ``components/`` even when this package is installed as
    ``timescale_k8s``, so the Job's revision does not depend on how it is installed), and their imports are
    relative, so the same code runs in the tests and in the pod, where ``components`` and
    ``components/shared`` are namespace packages (no ``__init__`` is shipped: the repository's pull in Pulumi).
    """
    sources = [PACKAGE_ROOT / "shared" / "scram.py", *sorted((PACKAGE_ROOT / "reconciler" / "tsreconcile").glob("*.py"))]
    files = []
    for source in sources:
        relative = f"{SHIPPED_PACKAGE}/{source.relative_to(PACKAGE_ROOT).as_posix()}"
        files.append(ProgramFile(key=relative.replace("/", "."), path=relative, text=source.read_text(encoding="utf-8")))
    return files


SETTINGS_PASSWORD_FILE = f"{SECRETS_DIR}/settings"
RESTAPI_FILE = f"{SECRETS_DIR}/restapi"
CA_DIR = "/etc/tsreconcile/ca"
CA_KEY = "ca.crt"


def mounted_secrets(target: ReconcileTarget) -> list[tuple[SecretFile, str]]:
    """(Secret key, path) of every password the Job reads, in a stable order: Patroni's REST API and the
    monitoring role's; never the superuser's or an application role's."""
    return [(target.restapi_password, RESTAPI_FILE), (target.settings_password, SETTINGS_PASSWORD_FILE)]


def desired_state(target: ReconcileTarget, *, patroni_url: str, timeout_seconds: int) -> Desired:
    """The Job's declaration for one database, with passwords as mounted file paths (never values)."""
    tls = target.ca_secret_name is not None
    return Desired(
        patroni_url=patroni_url,
        restapi_user=target.restapi_user,
        restapi_password_file=RESTAPI_FILE,
        settings_user=target.settings_user,
        settings_password_file=SETTINGS_PASSWORD_FILE,
        settings_database=target.settings_database,
        sslmode="verify-full" if tls else "disable",
        ca_file=f"{CA_DIR}/{CA_KEY}" if tls else None,
        dcs_parameters=dict(sorted(target.dcs_parameters.items())),
        managed_dcs_parameters=tuple(sorted(target.managed_dcs_parameters)),
        dcs_settings=dict(sorted(target.dcs_settings.items())),
        timeout_seconds=timeout_seconds,
    )


def revision(*, desired_json: str, secret_names: list[str], job_settings: dict[str, Any]) -> str:
    """A short hash of everything a run depends on; it names the Job."""
    program = [(f.path, hashlib.sha256(f.text.encode()).hexdigest()) for f in program_files()]
    material = json.dumps(
        {"desired": desired_json, "secrets": secret_names,
         "program": program, "job": job_settings},
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:REVISION_LENGTH]
