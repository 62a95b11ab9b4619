"""The tsflow pods' NetworkPolicy and their TLS client settings."""

from __future__ import annotations

import dataclasses
from typing import Any

from components.workload import MigrationJob, MigrationJobArgs, Workload
from tests.checks import selects
from tests.harness import Recording, run_program
from tests.workload.test_workload import IMAGE, NAMESPACE, RESOURCES, fake_database, workload_args

NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
DB_PODS = {"app.kubernetes.io/name": "timescaledb", "app.kubernetes.io/instance": "tsdb"}


def render(**overrides: Any) -> Recording:
    def program() -> None:
        database = dataclasses.replace(fake_database(), server_pod_labels=DB_PODS, **overrides)
        migration = MigrationJob("schema", MigrationJobArgs(namespace=NAMESPACE, image=IMAGE, database=database, resources=RESOURCES))
        Workload("generator", workload_args(database, metrics_namespace="monitoring", after=[migration.job]))

    return run_program(program)


def policy_for(recording: Recording, owner_kind: str) -> dict[str, Any]:
    owner = next(m for m in recording.manifests() if m["kind"] == owner_kind)
    labels = owner["spec"]["template"]["metadata"]["labels"]
    policies = [m for m in recording.manifests() if m["kind"] == "NetworkPolicy" and selects(m["spec"]["podSelector"], labels)]
    assert len(policies) == 1, owner_kind
    return policies[0]["spec"]


def test_generator_admits_only_scrapes_from_monitoring_and_reaches_only_postgres_and_dns() -> None:
    spec = policy_for(render(), "Deployment")
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec["ingress"] == [{
        "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
        "ports": [{"port": 8000, "protocol": "TCP"}],
    }]
    database, dns = spec["egress"]
    # Without a server namespace the peer is the policy's own namespace: never database pods in any namespace.
    assert database["to"] == [{"podSelector": {"matchLabels": DB_PODS}}]
    assert database["ports"] == [{"port": 5432, "protocol": "TCP"}]
    assert dns["to"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}]
    assert {(p["port"], p["protocol"]) for p in dns["ports"]} == {(53, "UDP"), (53, "TCP")}


def test_a_database_in_another_namespace_is_reached_there_only() -> None:
    spec = policy_for(render(server_namespace="data"), "Deployment")
    assert spec["egress"][0]["to"] == [{
        "podSelector": {"matchLabels": DB_PODS},
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}},
    }]


def test_the_migration_job_takes_no_ingress_at_all() -> None:
    spec = policy_for(render(), "Job")
    # No ingress rule at all (not an empty list, which the server drops: a diff on every apply) is deny-all.
    assert "ingress" not in spec and "Ingress" in spec["policyTypes"]
    assert len(spec["egress"]) == 2


def test_with_a_ca_the_apps_verify_the_server_against_it() -> None:
    recording = render(ca_secret_name="db-tls")
    for kind in ("Deployment", "Job"):
        pod = next(m for m in recording.manifests() if m["kind"] == kind)["spec"]["template"]["spec"]
        env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
        assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == "/etc/tsflow/db/ca.crt"
        volume = next(v for v in pod["volumes"] if v["name"] == "db-credentials")
        ca = volume["projected"]["sources"][1]["secret"]
        assert ca == {"name": "db-tls", "items": [{"key": "ca.crt", "path": "ca.crt"}]}, "the CA only, never tls.key"
