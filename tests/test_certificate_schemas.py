"""cert-manager Certificates against cert-manager's schema (``@kubernetes-models/cert-manager``, through
``tests/crd_validation.py``): the validator is shown catching a misspelled field, a wrong type, a value outside
an enum and a missing required field, then every Certificate the stacks render (the database's and the
pooler's) must pass it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.crd_validation import CERT_MANAGER_API, crd_validator_available, custom_resource_problems
from tests.pooler.test_pooler_tls import tls_stack

_UNAVAILABLE = crd_validator_available()
pytestmark = pytest.mark.skipif(_UNAVAILABLE is not None, reason=_UNAVAILABLE or "")


def _rendered() -> dict[str, dict[str, Any]]:
    """Every Certificate of the TLS stack (prod with the database's issuer and the pooler), by resource name."""
    certificates = {r.name: r.manifest() for r in tls_stack().of_type("kubernetes:cert-manager.io/v1:Certificate")}
    assert sorted(certificates) == ["pooler-certificate", "timescaledb-certificate"]
    assert all(m["apiVersion"] == CERT_MANAGER_API for m in certificates.values())
    return certificates


def _pooler_certificate() -> dict[str, Any]:
    certificate = copy.deepcopy(_rendered()["pooler-certificate"])
    certificate["metadata"]["name"] = "pooler-certificate"  # the mocks' auto-name has a random suffix
    return certificate


def test_every_rendered_certificate_passes() -> None:
    assert custom_resource_problems(list(_rendered().values())) == []


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda spec: spec.__setitem__("dnsName", spec.pop("dnsNames")), 'unknown field "dnsName" (at spec/dnsName)'),
        (lambda spec: spec["privateKey"].__setitem__("rotationpolicy", spec["privateKey"].pop("rotationPolicy")),
         'unknown field "rotationpolicy" (at spec/privateKey/rotationpolicy)'),
        (lambda spec: spec.__setitem__("duration", 2160), "must be string (at spec/duration)"),
        (lambda spec: spec["privateKey"].__setitem__("algorithm", "EC"),
         "must be equal to one of the allowed values (at spec/privateKey/algorithm)"),
        (lambda spec: spec.pop("secretName"), 'missing required field "secretName" (at spec)'),
    ],
    ids=["misspelled-field", "misspelled-nested-field", "wrong-type", "not-in-enum", "missing-required"],
)
def test_a_broken_certificate_is_reported(change: Any, problem: str) -> None:
    certificate = _pooler_certificate()
    change(certificate["spec"])
    assert custom_resource_problems([certificate]) == [f"Certificate/pooler-certificate: {problem}"]


def test_an_unknown_cert_manager_kind_is_reported() -> None:
    unknown = {"apiVersion": CERT_MANAGER_API, "kind": "Certificat", "metadata": {"name": "c"}, "spec": {}}
    assert custom_resource_problems([unknown]) == [f"{CERT_MANAGER_API}/Certificat/c: no schema for this kind, not validated"]
