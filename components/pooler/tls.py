"""The pooler's own TLS: the names its certificate must hold, the checks that tie it to the database's TLS,
the cert-manager ``Certificate`` that can write it and the PgBouncer container's TLS volume.

With database TLS every client the stack configures verifies its server (``verify-full``). Through the
pooler there are two servers: the workloads verify PgBouncer against the pooler Services' names, so
PgBouncer needs a certificate of its own (the database's names only the database's Services), and
PgBouncer verifies the database against the database's CA and its Service's name. The PgBouncer
container gets the pooler's ``tls.crt``/``tls.key`` and the database Secret's ``ca.crt`` only, never the
database's key. The workloads get the pooler Secret's ``ca.crt`` (``DatabaseConnection.ca_secret_name``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_kubernetes as k8s

from . import pgbouncer_ini as ini
from ..shared.certificates import server_certificate_spec
from ..shared.names import DNS_SUBDOMAIN

if TYPE_CHECKING:  # a runtime import would be circular (the database component imports components.pooler)
    from ..timescaledb import TlsIssuer

PATHS = ("rw", "ro")
ISSUER_KINDS = ("Issuer", "ClusterIssuer")


def service_names(name: str) -> dict[str, str]:
    """Fixed Service names by path (used with TLS, where the certificate must name them)."""
    return {path: f"{name}-{path}" for path in PATHS}


def certificate_dns_names(name: str, namespace: str) -> list[str]:
    """Names the pooler certificate must hold: every name a client may use for either Service."""
    suffixes = ("", f".{namespace}", f".{namespace}.svc", f".{namespace}.svc.cluster.local")
    return [f"{service}{suffix}" for service in service_names(name).values() for suffix in suffixes]


def check_tls(
    *,
    tls_secret_name: str | None,
    database_ca_secret_name: pulumi.Input[str] | None,
    tls_issuer: TlsIssuer | None,
    dns_names: Sequence[str] | None = None,
) -> None:
    """Raise ``ValueError`` naming the fields: the pooler has a certificate exactly when the database has TLS,
    and it is not the database's. ``dns_names``, when known, are quoted in the error that asks for one."""
    if tls_secret_name is not None and (len(tls_secret_name) > 253 or not DNS_SUBDOMAIN.match(tls_secret_name)):
        raise ValueError(f"tls_secret_name ({tls_secret_name!r}) must be a Secret name")
    if database_ca_secret_name is not None and tls_secret_name is None:
        names = f" ({', '.join(dns_names)})" if dns_names else ""
        raise ValueError(
            f"tls_secret_name: is required with database.ca_secret_name ({database_ca_secret_name!r}): clients "
            f"verify the pooler's host name (verify-full), so the pooler needs a certificate of its own for its "
            f"Services{names}; name a kubernetes.io/tls Secret holding it and ca.crt (with a cert-manager issuer "
            "the pooler's Certificate writes it)"
        )
    if tls_secret_name is not None and database_ca_secret_name is None:
        raise ValueError(
            f"tls_secret_name ({tls_secret_name!r}) needs database.ca_secret_name: PgBouncer verifies the database "
            "(verify-full) with its CA, and a database without TLS takes plaintext only"
        )
    if tls_secret_name is not None and tls_secret_name == database_ca_secret_name:
        raise ValueError(
            f"tls_secret_name ({tls_secret_name!r}) must differ from database.ca_secret_name: the database's "
            "certificate does not name the pooler's Services, and its key stays in the database's pods"
        )
    if tls_issuer is not None:
        if tls_secret_name is None:
            raise ValueError(f"tls_issuer ({tls_issuer.name!r}) needs tls_secret_name: the Secret the Certificate writes")
        if not DNS_SUBDOMAIN.match(tls_issuer.name) or tls_issuer.kind not in ISSUER_KINDS:
            raise ValueError(
                f"tls_issuer ({tls_issuer.name!r}, {tls_issuer.kind!r}) must name an Issuer or ClusterIssuer"
            )


def certificate_spec(*, secret_name: str, name: str, dns_names: pulumi.Input[Sequence[str]],
                     issuer: TlsIssuer) -> dict[str, Any]:
    """The pooler's server certificate, with the database's issuer and the stack's one certificate policy."""
    return server_certificate_spec(secret_name=secret_name, common_name=service_names(name)["rw"], dns_names=dns_names,
                                   issuer_name=issuer.name, issuer_kind=issuer.kind)


def tls_volume(name: str, *, tls_secret_name: str, database_ca_secret_name: pulumi.Input[str]) -> k8s.core.v1.VolumeArgs:
    """PgBouncer's TLS files in one directory (``ini.TLS_DIR``): the pooler's certificate and key, and the
    database's CA as ``ini.SERVER_CA_FILE`` (the database Secret's ``ca.crt`` only)."""
    own = [k8s.core.v1.KeyToPathArgs(key=key, path=key) for key in (ini.CERT_FILE, ini.KEY_FILE)]
    server_ca = [k8s.core.v1.KeyToPathArgs(key="ca.crt", path=ini.SERVER_CA_FILE)]
    return k8s.core.v1.VolumeArgs(
        name=name,
        projected=k8s.core.v1.ProjectedVolumeSourceArgs(
            default_mode=0o440,
            sources=[
                k8s.core.v1.VolumeProjectionArgs(secret=k8s.core.v1.SecretProjectionArgs(name=secret, items=items))
                for secret, items in ((tls_secret_name, own), (database_ca_secret_name, server_ca))
            ],
        ),
    )
