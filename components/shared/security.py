"""Secure-by-default pod and container security contexts shared by every component."""

from __future__ import annotations

import pulumi_kubernetes as k8s

RUNTIME_DEFAULT_SECCOMP = k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")


def pod_security_context(*, run_as_user: int, fs_group: int | None = None) -> k8s.core.v1.PodSecurityContextArgs:
    """A pod context that passes the 'restricted' Pod Security Standard."""
    return k8s.core.v1.PodSecurityContextArgs(
        run_as_non_root=True,
        run_as_user=run_as_user,
        run_as_group=fs_group if fs_group is not None else run_as_user,
        fs_group=fs_group,
        fs_group_change_policy="OnRootMismatch" if fs_group is not None else None,
        seccomp_profile=RUNTIME_DEFAULT_SECCOMP,
    )


def container_security_context(*, read_only_root_filesystem: bool = True) -> k8s.core.v1.SecurityContextArgs:
    """A container context: non-root, no privilege escalation, all capabilities dropped, RuntimeDefault seccomp."""
    return k8s.core.v1.SecurityContextArgs(
        run_as_non_root=True,
        allow_privilege_escalation=False,
        privileged=False,
        read_only_root_filesystem=read_only_root_filesystem,
        capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"]),
        seccomp_profile=RUNTIME_DEFAULT_SECCOMP,
    )
