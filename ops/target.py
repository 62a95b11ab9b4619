"""What the commands act on, read from a stack's config file: kube context, namespace, members, stanza."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from components.timescaledb.backup import repositories
from components.timescaledb.component import statefulset_name
from stack.config import DATABASE_NAME, PROJECT, parse_stack_config

ROOT = Path(__file__).resolve().parent.parent


class TargetError(Exception):
    """The stack cannot be acted on as asked (no such stack file, no kube context)."""


@dataclass(frozen=True)
class Target:
    """A deployed database cluster."""

    stack: str
    context: str
    namespace: str
    members: tuple[str, ...]
    """Pod names of every member that can exist (``<name>-<ordinal>`` up to the autoscaler's maximum)."""
    stanza: str | None
    """pgBackRest stanza, None without backups."""
    standby: bool
    """True for a standby cluster (``backup.standby``): the only kind ``promote`` acts on."""
    repositories: int = 1
    """pgBackRest repositories (2 with ``backup.secondaryRepository``): an on-demand backup goes into each."""


def load_target(stack: str, *, context: str | None = None, root: Path = ROOT) -> Target:
    """The target of ``Pulumi.<stack>.yaml``; ``context`` overrides (or stands in for) ``cluster.context``."""
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        known = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in root.glob("Pulumi.*.yaml"))
        raise TargetError(f"no stack file {path.name} (stacks here: {', '.join(known) or 'none'})")
    prefix = f"{PROJECT}:"
    document = yaml.safe_load(path.read_text()) or {}
    raw = {key.removeprefix(prefix): value for key, value in (document.get("config") or {}).items()
           if key.startswith(prefix)}
    config = parse_stack_config(raw)
    kube_context = context or config.cluster.context
    if not kube_context:
        raise TargetError(f"{path.name} sets no {prefix}cluster.context: pass --context, so no command runs "
                          "against whatever cluster the kubeconfig happens to point at")
    args = config.database.args
    members = args.max_replicas or args.replicas
    return Target(
        stack=stack, context=kube_context, namespace=config.cluster.namespace,
        members=tuple(f"{statefulset_name(DATABASE_NAME)}-{ordinal}" for ordinal in range(members)),
        stanza=args.backup.stanza if args.backup else None,
        standby=bool(args.backup and args.backup.standby),
        repositories=len(repositories(args.backup)) if args.backup else 1,
    )
