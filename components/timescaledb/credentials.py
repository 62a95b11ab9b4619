"""Passwords and Secrets of the TimescaleDB component.

Every password is a ``pulumi_random.RandomPassword`` without keepers (stable across updates), marked
secret explicitly, or, for a standby cluster, the source cluster's password of the same role (its data holds
the source's roles: :func:`source_password`); either lands only in Kubernetes Secrets: pods read them through ``secretKeyRef`` or a
secret volume, never through a ConfigMap or a plain env value. Passwords are alphanumeric (32 chars,
~190 bits) so they need no escaping in URIs, shell scripts or pgpass files.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from ..shared.types import ConnectionSecretKeys

PASSWORD_LENGTH = 32


@dataclass(frozen=True)
class RolePassword:
    """A role name and its generated password (already marked secret)."""

    role: str
    password: pulumi.Output[str]


def role_password(name: str, role: str, opts: pulumi.ResourceOptions) -> RolePassword:
    """A stable RandomPassword for ``role``; ``opts`` carries parent/protect/retain."""
    generated = random.RandomPassword(name, length=PASSWORD_LENGTH, special=False, opts=opts)
    return RolePassword(role=role, password=pulumi.Output.secret(generated.result))


def source_password(passwords: pulumi.Input[Mapping[str, str]], role: str) -> RolePassword:
    """``role``'s password from a source cluster's ``role_passwords`` (role name → password), marked secret; a
    source without that role fails the update with the role's name (its data has no such role to log in as)."""

    def pick(given: Mapping[str, str]) -> str:
        if role not in given:
            raise ValueError(
                f"source_passwords has no password for role {role!r} (it has {', '.join(sorted(given)) or 'none'}): "
                "the source cluster's data holds no such role; configure the same roles (app_user, reader_user, "
                "pooler_lookup) as the source"
            )
        return given[role]

    return RolePassword(role=role, password=pulumi.Output.secret(pulumi.Output.from_input(passwords).apply(pick)))


def opaque_secret(
    name: str,
    *,
    namespace: pulumi.Input[str],
    labels: Mapping[str, str],
    data: Mapping[str, pulumi.Input[str]],
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    """An auto-named Opaque Secret whose string data is marked secret as a whole."""
    return k8s.core.v1.Secret(
        name,
        metadata=k8s.meta.v1.ObjectMetaArgs(namespace=namespace, labels=dict(labels)),
        type="Opaque",
        string_data=pulumi.Output.secret(pulumi.Output.all(**dict(data))),
        opts=opts,
    )


def connection_data(
    *, credentials: RolePassword, host: pulumi.Input[str], port: int, database: str
) -> dict[str, pulumi.Input[str]]:
    """The ``ConnectionSecretKeys.ALL`` entries for one role."""
    uri = pulumi.Output.all(host, credentials.password).apply(
        lambda args: f"postgresql://{credentials.role}:{args[1]}@{args[0]}:{port}/{database}"
    )
    return {
        ConnectionSecretKeys.HOST: host,
        ConnectionSecretKeys.PORT: str(port),
        ConnectionSecretKeys.DBNAME: database,
        ConnectionSecretKeys.USER: credentials.role,
        ConnectionSecretKeys.PASSWORD: credentials.password,
        ConnectionSecretKeys.URI: uri,
    }

