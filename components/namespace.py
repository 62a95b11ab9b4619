"""The stack's namespace: created with Pod Security 'restricted' enforcement, or an existing one used as is."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from .shared.labels import recommended_labels

POD_SECURITY_LABELS = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
    "pod-security.kubernetes.io/audit": "restricted",
}


@dataclass(frozen=True, kw_only=True)
class StackNamespaceArgs:
    """Which namespace the stack uses and whether it owns it."""

    name: str
    """Namespace name (fixed: other tools and people address it by name); required."""
    create: bool = True
    """Create and own the namespace; default True. False uses an existing namespace."""
    protect: bool = False
    """Protect it and keep it on ``pulumi destroy`` (deleting a namespace deletes its PVCs); default False."""


class StackNamespace(pulumi.ComponentResource):
    """The namespace every other component of the stack lives in."""

    name: pulumi.Output[str]
    namespace: k8s.core.v1.Namespace | None

    def __init__(self, name: str, args: StackNamespaceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("timescale-k8s:index:StackNamespace", name, None, opts)
        self.namespace = None
        if args.create:
            self.namespace = k8s.core.v1.Namespace(
                f"{name}-namespace",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=args.name,
                    labels={
                        **recommended_labels(app="timescale-k8s", instance=args.name, component="namespace"),
                        **POD_SECURITY_LABELS,
                    },
                ),
                opts=pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect),
            )
            self.name = self.namespace.metadata.name
        else:
            self.name = pulumi.Output.from_input(args.name)
        self.register_outputs({"name": self.name})
