"""What TLS turns on in the rendered objects: fixed Service names the certificate names, hostssl rules,
members and the exporter verifying the server, an optional cert-manager Certificate; plus the database
PDB of an autoscaled cluster and secrets mounted as files only."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from components.timescaledb import TlsIssuer, certificate_dns_names
from components.reconciler.tsreconcile.desired import DESIRED_ENV, DatabaseDesired
from components.timescaledb import role_agent
from components.timescaledb import patroni_config as pc
from tests.checks import schema_problems, wiring_problems
from tests.stacks import external_objects, run_main, stack_file_config
from tests.timescaledb.test_patroni_validate import kubelet_env, validate
from tests.timescaledb.test_timescaledb import NS, PDB, STS, container, manifest, pod_spec, run

TLS_SECRET = "db-tls"
POOLER_TLS_SECRET = "pooler-tls"
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"


def env_of(recording, name: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {e["name"]: e for e in container(recording, name)["env"]}


def patroni(recording) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    config_map = next(m for m in recording.manifests() if m["kind"] == "ConfigMap" and "patroni.yaml" in m.get("data", {}))
    return json.loads(config_map["data"]["patroni.yaml"])


@pytest.fixture(scope="module")
def tls() -> Any:
    return run(tls_secret_name=TLS_SECRET, tls_issuer=TlsIssuer(name="internal-ca", kind="ClusterIssuer"), replicas=3)


def test_services_have_the_names_the_certificate_holds(tls) -> None:  # type: ignore[no-untyped-def]
    names = {m["metadata"]["name"] for m in tls.manifests() if m["kind"] == "Service"}
    assert names == {"tsdb", "tsdb-config", "tsdb-sync", "tsdb-failover", "tsdb-replicas", "tsdb-headless"}
    assert manifest(tls, STS)["spec"]["serviceName"] == "tsdb-headless"
    dns = certificate_dns_names("tsdb", NS)
    assert "tsdb.data.svc.cluster.local" in dns and "*.tsdb-headless.data.svc.cluster.local" in dns
    assert "tsdb-headless.data.svc" in dns, "the reconciler's and Prometheus's name for the REST API"


def test_a_cert_manager_certificate_writes_the_tls_secret(tls) -> None:  # type: ignore[no-untyped-def]
    certificate = manifest(tls, CERTIFICATE)
    assert certificate["spec"]["secretName"] == TLS_SECRET
    assert certificate["spec"]["issuerRef"] == {"name": "internal-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"}
    assert certificate["spec"]["dnsNames"] == certificate_dns_names("tsdb", NS)
    assert "server auth" in certificate["spec"]["usages"]


def test_without_an_issuer_no_certificate_is_made() -> None:
    assert not run(tls_secret_name=TLS_SECRET).of_type(CERTIFICATE)


def test_the_network_takes_tls_only_and_members_verify_each_other(tls) -> None:  # type: ignore[no-untyped-def]
    config = patroni(tls)
    rules = config["postgresql"]["pg_hba"]
    assert "hostnossl all all 0.0.0.0/0 reject" in rules and "hostssl all all 0.0.0.0/0 scram-sha-256" in rules
    assert not [r for r in rules if r.startswith("host ") and r.endswith("scram-sha-256") and "127.0.0.1" not in r and "::1" not in r]
    for role in ("replication", "rewind"):
        assert config["postgresql"]["authentication"][role]["sslmode"] == "verify-full"
        assert config["postgresql"]["authentication"][role]["sslrootcert"] == pc.CA_FILE
    address = env_of(tls, "timescaledb")["PATRONI_POSTGRESQL_CONNECT_ADDRESS"]["value"]
    assert address == "$(PATRONI_NAME).tsdb-headless.$(PATRONI_KUBERNETES_NAMESPACE).svc.cluster.local:5432"


def test_patroni_serves_its_rest_api_over_https_at_the_member_names(tls) -> None:  # type: ignore[no-untyped-def]
    config = patroni(tls)
    assert config["restapi"] == {"listen": "0.0.0.0:8008", "certfile": pc.CERT_FILE, "keyfile": pc.KEY_FILE}
    assert config["ctl"] == {"cacert": pc.CA_FILE}, "patronictl in the pod verifies the members"
    address = env_of(tls, "timescaledb")["PATRONI_RESTAPI_CONNECT_ADDRESS"]["value"]
    assert address == "$(PATRONI_NAME).tsdb-headless.$(PATRONI_KUBERNETES_NAMESPACE).svc.cluster.local:8008"
    patroni_container = container(tls, "timescaledb")
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert patroni_container[probe]["httpGet"]["scheme"] == "HTTPS", probe
    plain = run()
    assert "certfile" not in patroni(plain)["restapi"] and "ctl" not in patroni(plain)
    assert "scheme" not in container(plain, "timescaledb")["livenessProbe"]["httpGet"]


def test_the_role_agent_keeps_a_renewed_certificate_served_and_never_sees_the_key(tls) -> None:  # type: ignore[no-untyped-def]
    config_map = next(m for m in tls.manifests() if m["kind"] == "ConfigMap" and "patroni.yaml" in m.get("data", {}))
    declared = DatabaseDesired.from_json(config_map["data"][role_agent.DECLARATION_KEY])
    assert declared.tls is not None and declared.tls.cert_file == role_agent.CERTIFICATE_FILE
    assert (declared.tls.postgres_port, declared.tls.patroni_port) == (pc.POSTGRES_PORT, pc.PATRONI_PORT)
    (volume,) = [v for v in pod_spec(tls)["volumes"] if v["name"] == role_agent.SECRETS_VOLUME]
    mounted = {(s["secret"]["name"], i["key"]) for s in volume["projected"]["sources"] for i in s["secret"]["items"]}
    assert (TLS_SECRET, "tls.crt") in mounted and (TLS_SECRET, "tls.key") not in mounted
    assert any(key == "restapi-password" for _, key in mounted)
    assert DatabaseDesired.from_json(
        next(m for m in run().manifests() if m["kind"] == "ConfigMap" and "patroni.yaml" in m.get("data", {}))["data"][role_agent.DECLARATION_KEY]
    ).tls is None, "without TLS there is nothing to reload and no REST API password to mount"


def test_the_exporter_verifies_its_member_and_never_sees_the_key(tls) -> None:  # type: ignore[no-untyped-def]
    env = env_of(tls, "postgres-exporter")
    uri = env["DATA_SOURCE_URI"]["value"]
    assert uri.startswith("$(POD_NAME).tsdb-headless.$(POD_NAMESPACE).svc.cluster.local:5432/")
    assert "sslmode=verify-full" in uri and f"sslrootcert={pc.CA_FILE}" in uri
    volumes = {v["name"]: v for v in pod_spec(tls)["volumes"]}
    for mount in container(tls, "postgres-exporter")["volumeMounts"]:
        volume = volumes[mount["name"]]
        keys = [i["key"] for s in volume.get("projected", {}).get("sources", []) for i in s["secret"]["items"]]
        assert "secret" not in volume and "tls.key" not in keys, mount


def test_patroni_accepts_the_tls_configuration(tls, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    statefulset = manifest(tls, STS)
    patroni_container = next(c for c in statefulset["spec"]["template"]["spec"]["containers"] if c["name"] == "timescaledb")
    env = kubelet_env(patroni_container)
    assert env["PATRONI_REWIND_PASSWORD"] == "sample-secret-from-file"
    result = validate(json.dumps(patroni(tls)), env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def manifest_of(manifests: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [m for m in manifests if m["kind"] == kind]
    return found


def test_no_secret_reaches_any_container_through_the_environment(tls) -> None:  # type: ignore[no-untyped-def]
    for name in ("timescaledb", "postgres-exporter"):
        assert not [e["name"] for e in container(tls, name)["env"] if "secretKeyRef" in e.get("valueFrom", {})]


def test_an_autoscaled_cluster_keeps_its_disruption_budget() -> None:
    assert not run(replicas=1).of_type(PDB)
    assert run(replicas=1, autoscaled=True, max_replicas=3).of_type(PDB)


def test_issuer_without_secret_is_refused() -> None:
    with pytest.raises(ValueError, match=r"tls_issuer \('ca'\) needs tls_secret_name"):
        run(tls_issuer=TlsIssuer(name="ca"))


def test_a_tls_stack_renders_valid_wired_objects_and_verifying_clients() -> None:
    """The prod stack with TLS everywhere (database and pooler from one issuer): schema-valid, wired, and every
    client verifies whom it talks to."""
    config = copy.deepcopy(stack_file_config("prod"))
    config["timescale-k8s:timescaledb"].update({"tlsSecretName": TLS_SECRET, "tlsIssuer": {"name": "internal-ca"}})
    config["timescale-k8s:pooler"]["tlsSecretName"] = POOLER_TLS_SECRET
    recording = run_main("prod", config)
    manifests = recording.manifests()
    assert len([m for m in manifests if m["kind"] == "Certificate"]) == 2, "the database's and the pooler's"
    assert schema_problems(manifests) == []
    tls_secrets = [{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "timescale"},
                    "data": {"tls.crt": "", "tls.key": "", "ca.crt": ""}} for name in (TLS_SECRET, POOLER_TLS_SECRET)]
    assert wiring_problems(manifests, external=[*tls_secrets, *external_objects(config)]) == []
    # The reconciler verifies PostgreSQL and Patroni's HTTPS REST API.
    reconciler = next(m for m in manifests if m["kind"] == "Job" and "reconcile" in m["metadata"]["name"])
    desired = json.loads(next(e["value"] for e in reconciler["spec"]["template"]["spec"]["containers"][0]["env"]
                              if e["name"] == DESIRED_ENV))
    assert desired["sslmode"] == "verify-full" and desired["patroni_url"].startswith("https://timescaledb-headless.timescale.svc")
    (patroni_monitor,) = [m for m in manifests if m["kind"] == "PodMonitor" and "patroni" in m["metadata"]["name"]]
    (endpoint,) = patroni_monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["scheme"] == "https" and endpoint["tlsConfig"] == {
        "ca": {"secret": {"name": TLS_SECRET, "key": "ca.crt"}}, "serverName": "timescaledb-headless.timescale.svc"}
    agent = next(c for c in manifest_of(manifests, "StatefulSet")["spec"]["template"]["spec"]["containers"] if c["name"] == "backup-agent")
    assert agent["command"][-1].endswith(f"--patroni-url https://127.0.0.1:8008 --patroni-ca {pc.CA_FILE}")
    # The tsflow apps verify their server: the migration the database, the generator and consumer the pooler.
    apps = [m for m in manifests if m["kind"] in ("Deployment", "Job")
            and any(e["name"] == "PGSSLMODE" for e in m["spec"]["template"]["spec"]["containers"][0].get("env", []))]
    hosts = set()
    for app in apps:
        env = {e["name"]: e.get("value") for e in app["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"].endswith("/ca.crt"), app["metadata"]["name"]
        hosts.add(env["PGHOST"])
    assert len(apps) == 3 and "timescaledb.timescale.svc.cluster.local" in hosts
    assert any(host.startswith("pooler-") for host in hosts), hosts
