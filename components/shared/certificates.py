"""cert-manager server certificates, one policy for every component that requests one.

ECDSA P-256, a new key on every renewal, valid 90 days and renewed 30 days before expiry, for TLS servers
only (``server auth``). The TimescaleDB and Pooler components request their certificates here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pulumi


def server_certificate_spec(*, secret_name: str, common_name: str, dns_names: pulumi.Input[Sequence[str]],
                            issuer_name: str, issuer_kind: str) -> dict[str, Any]:
    """The ``spec`` of a ``cert-manager.io/v1`` Certificate written to ``secret_name`` (``tls.crt``,
    ``tls.key`` and, from a CA issuer, ``ca.crt``) for ``dns_names``."""
    return {
        "secretName": secret_name,
        "commonName": common_name,
        "dnsNames": dns_names,
        "usages": ["server auth", "digital signature", "key encipherment"],
        "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
        "duration": "2160h",
        "renewBefore": "720h",
        "issuerRef": {"name": issuer_name, "kind": issuer_kind, "group": "cert-manager.io"},
    }
