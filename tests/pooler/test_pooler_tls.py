"""The pooler with database TLS, rendered: its own certificate (a cert-manager Certificate from the database's
issuer, or a Secret you make) for fixed Service names, PgBouncer's TLS volume and settings, and workloads that
verify the pooler with its CA; plus the component's refusals. The real processes are in
``test_pooler_tls_processes.py``."""

from __future__ import annotations

import configparser
import copy
import dataclasses
import functools
from typing import Any

import pytest

from components.pooler import LOOKUP_ROLE, PoolerArgs, PoolSettings, check_args
from components.pooler import auth, pgbouncer_ini as ini
from components.pooler.tls import certificate_dns_names
from components.shared.pod_spec import CA_FILE
from components.timescaledb import TlsIssuer
from components.timescaledb import certificate_dns_names as database_dns_names
from stack.pooler import POOLER_NAME
from tests.checks import schema_problems, selects, wiring_problems
from tests.harness import Recording
from tests.stacks import external_objects, run_main, stack_file_config

NS = "timescale"
DATABASE_SECRET = "timescaledb-tls"
POOLER_SECRET = "pooler-tls"
ISSUER = {"name": "internal-ca", "kind": "ClusterIssuer"}
CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def tls_config(*, issuer: bool = True) -> dict[str, Any]:
    """prod with database TLS (from ``ISSUER`` unless ``issuer`` is False) and the pooler's own Secret."""
    config = copy.deepcopy(stack_file_config("prod"))
    config["timescale-k8s:timescaledb"].update({"tlsSecretName": DATABASE_SECRET, **({"tlsIssuer": ISSUER} if issuer else {})})
    config["timescale-k8s:pooler"]["tlsSecretName"] = POOLER_SECRET
    return config


@functools.cache
def tls_stack(issuer: bool = True) -> Recording:
    """The whole program for :func:`tls_config` (cached: read-only in tests)."""
    return run_main("prod", tls_config(issuer=issuer))


def tls_secrets() -> list[dict[str, Any]]:
    """The two ``kubernetes.io/tls`` Secrets, as cert-manager (or the user) writes them."""
    return [{"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
             "metadata": {"name": name, "namespace": NS}, "data": {"tls.crt": "", "tls.key": "", "ca.crt": ""}}
            for name in (DATABASE_SECRET, POOLER_SECRET)]


def _pod(recording: Recording, name: str) -> dict[str, Any]:
    return recording.one(DEPLOYMENT, name).manifest()["spec"]["template"]["spec"]


def _container(recording: Recording, deployment: str, name: str) -> dict[str, Any]:
    return next(c for c in _pod(recording, deployment)["containers"] if c["name"] == name)


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def _fqdn(recording: Recording, service: str) -> str:
    metadata = recording.one("kubernetes:core/v1:Service", service).manifest()["metadata"]
    return f"{metadata['name']}.{metadata['namespace']}.svc.cluster.local"


@pytest.mark.parametrize("issuer", [True, False], ids=["cert-manager", "user-secret"])
def test_a_tls_stack_with_the_pooler_renders_valid_wired_objects(issuer: bool) -> None:
    manifests = tls_stack(issuer).manifests()
    assert schema_problems([m for m in manifests if m["kind"] != "Certificate"]) == []
    external = [*tls_secrets(), *external_objects(tls_config(issuer=issuer))]
    assert wiring_problems(manifests, external=external) == []
    missing = wiring_problems(manifests, external=[s for s in external if s["metadata"]["name"] != POOLER_SECRET])
    assert missing and all(POOLER_SECRET in p for p in missing), missing  # the check looks for the pooler's Secret


def test_pooler_services_have_the_fixed_names_its_certificate_holds() -> None:
    names = certificate_dns_names(POOLER_NAME, NS)
    for path in ("rw", "ro"):
        service = tls_stack().one("kubernetes:core/v1:Service", f"{POOLER_NAME}-{path}").manifest()["metadata"]["name"]
        assert service == f"{POOLER_NAME}-{path}"
        assert [service, f"{service}.{NS}", f"{service}.{NS}.svc", f"{service}.{NS}.svc.cluster.local"] == [
            n for n in names if n.split(".")[0] == service
        ]
    assert len(names) == 8


def test_cert_manager_writes_the_pooler_certificate_with_the_database_issuer() -> None:
    certificates = {c.name: c.manifest()["spec"] for c in tls_stack().of_type(CERTIFICATE)}
    assert set(certificates) == {"timescaledb-certificate", f"{POOLER_NAME}-certificate"}
    database, pooler = certificates["timescaledb-certificate"], certificates[f"{POOLER_NAME}-certificate"]
    assert pooler["secretName"] == POOLER_SECRET and database["secretName"] == DATABASE_SECRET
    assert pooler["issuerRef"] == database["issuerRef"] == {**ISSUER, "group": "cert-manager.io"}
    assert pooler["dnsNames"] == certificate_dns_names(POOLER_NAME, NS)
    assert pooler["commonName"] == f"{POOLER_NAME}-rw" and "server auth" in pooler["usages"]
    assert not tls_stack(issuer=False).of_type(CERTIFICATE)  # a Secret you make: nothing to request


def test_pgbouncer_mounts_its_own_certificate_and_only_the_database_ca() -> None:
    for path in ("rw", "ro"):
        volumes = {v["name"]: v for v in _pod(tls_stack(), f"{POOLER_NAME}-{path}")["volumes"]}
        sources = {s["secret"]["name"]: s["secret"]["items"] for s in volumes["tls"]["projected"]["sources"]}
        assert sources == {
            POOLER_SECRET: [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}],
            DATABASE_SECRET: [{"key": "ca.crt", "path": ini.SERVER_CA_FILE}],  # never the database's key
        }
        mounts = {m["name"]: m["mountPath"] for m in _container(tls_stack(), f"{POOLER_NAME}-{path}", "pgbouncer")["volumeMounts"]}
        assert mounts["tls"] == ini.TLS_DIR
        exporter = _container(tls_stack(), f"{POOLER_NAME}-{path}", "pgbouncer-exporter")
        assert "tls" not in {m["name"] for m in exporter["volumeMounts"]}


@pytest.mark.parametrize(("path", "database_service"), [("rw", "timescaledb-primary"), ("ro", "timescaledb-replicas")])
def test_pgbouncer_takes_tls_only_and_verifies_the_database_by_a_name_its_certificate_holds(
    path: str, database_service: str
) -> None:
    text = tls_stack().one("kubernetes:core/v1:ConfigMap", f"{POOLER_NAME}-config").manifest()["data"][f"{path}.ini"]
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(text)
    pgbouncer = config["pgbouncer"]
    assert pgbouncer["client_tls_sslmode"] == "require"
    assert pgbouncer["client_tls_cert_file"] == f"{ini.TLS_DIR}/tls.crt"
    assert pgbouncer["client_tls_key_file"] == f"{ini.TLS_DIR}/tls.key"
    assert pgbouncer["server_tls_sslmode"] == "verify-full"
    assert pgbouncer["server_tls_ca_file"] == f"{ini.TLS_DIR}/{ini.SERVER_CA_FILE}"
    host = dict(part.split("=") for part in config["databases"]["app"].split())["host"]
    assert host == _fqdn(tls_stack(), database_service) and host in database_dns_names("timescaledb", NS)


@pytest.mark.parametrize("workload", ["generator", "consumer"])
def test_workloads_verify_the_pooler_with_its_ca(workload: str) -> None:
    recording = tls_stack()
    env = _env(_container(recording, f"{workload}-deployment", workload))
    names = certificate_dns_names(POOLER_NAME, NS)
    assert env["PGHOST"] == _fqdn(recording, f"{POOLER_NAME}-rw") and env["PGHOST"] in names
    assert env["PGSSLMODE"] == "verify-full" and env["PGSSLROOTCERT"] == CA_FILE
    if workload == "consumer":
        assert env["TSFLOW_READ_DSN"] == f"host={_fqdn(recording, f'{POOLER_NAME}-ro')} port=5432"
        assert _fqdn(recording, f"{POOLER_NAME}-ro") in names
    projected = [s["secret"] for v in _pod(recording, f"{workload}-deployment")["volumes"] if "projected" in v
                 for s in v["projected"]["sources"]]
    cas = [(s["name"], s["items"]) for s in projected if s["name"] in (POOLER_SECRET, DATABASE_SECRET)]
    assert cas == [(POOLER_SECRET, [{"key": "ca.crt", "path": "ca.crt"}])]
    policy = next(m for m in recording.manifests() if m["kind"] == "NetworkPolicy" and m["metadata"]["name"].startswith(workload))
    (database_rule, _dns) = policy["spec"]["egress"]
    assert database_rule["ports"] == [{"port": ini.LISTEN_PORT, "protocol": "TCP"}]
    selector = database_rule["to"][0]["podSelector"]
    pod_labels = {name: recording.one(kind, name).manifest()["spec"]["template"]["metadata"]["labels"]
                  for kind, name in ((DEPLOYMENT, f"{POOLER_NAME}-rw"), (DEPLOYMENT, f"{POOLER_NAME}-ro"),
                                     ("kubernetes:apps/v1:StatefulSet", "timescaledb"))}
    assert {name: selects(selector, labels) for name, labels in pod_labels.items()} == {
        f"{POOLER_NAME}-rw": True, f"{POOLER_NAME}-ro": True, "timescaledb": False,  # the pooler, not the database
    }


def test_migrations_keep_verifying_the_database_directly() -> None:
    job = tls_stack().one("kubernetes:batch/v1:Job", "migrate").manifest()["spec"]["template"]["spec"]
    env = _env(job["containers"][0])
    assert env["PGHOST"] == _fqdn(tls_stack(), "timescaledb-primary") and env["PGSSLMODE"] == "verify-full"
    sources = [s["secret"]["name"] for v in job["volumes"] if "projected" in v for s in v["projected"]["sources"]]
    assert DATABASE_SECRET in sources and POOLER_SECRET not in sources


def test_the_exporter_uses_tls_over_loopback() -> None:
    connection = _env(_container(tls_stack(), f"{POOLER_NAME}-rw", "pgbouncer-exporter"))["PGBOUNCER_EXPORTER_CONNECTION_STRING"]
    assert connection == f"postgres://{LOOKUP_ROLE}@127.0.0.1:{ini.LISTEN_PORT}/pgbouncer?sslmode=require"


def _args(**overrides: Any) -> PoolerArgs:
    from components.shared.types import DatabaseConnection

    database = DatabaseConnection(read_write_host=None, read_only_host=None, port=5432, database="app",  # type: ignore[arg-type]
                                  user="app", secret_name=None, client_labels={"c": "true"},  # type: ignore[arg-type]
                                  ca_secret_name=overrides.pop("database_ca", None))
    lookup = auth.LookupCredentials(role=LOOKUP_ROLE, secret_name=None)  # type: ignore[arg-type]
    return dataclasses.replace(PoolerArgs(namespace="ns", database=database, lookup=lookup), **overrides)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"database_ca": "db-tls"},
     r"tls_secret_name: is required with database\.ca_secret_name \('db-tls'\): clients verify the pooler's host "
     r"name \(verify-full\), so the pooler needs a certificate of its own for its Services \(pool-rw, pool-rw\.ns, "),
    ({"tls_secret_name": "pool-tls"}, r"tls_secret_name \('pool-tls'\) needs database\.ca_secret_name"),
    ({"database_ca": "db-tls", "tls_secret_name": "db-tls"}, r"tls_secret_name \('db-tls'\) must differ from database\.ca_secret_name"),
    ({"database_ca": "db-tls", "tls_secret_name": "Pool_TLS"}, r"tls_secret_name \('Pool_TLS'\) must be a Secret name"),
    ({"database_ca": "db-tls", "tls_issuer": TlsIssuer(name="ca")}, r"tls_secret_name: is required"),
    ({"tls_issuer": TlsIssuer(name="ca")}, r"tls_issuer \('ca'\) needs tls_secret_name"),
    ({"database_ca": "db-tls", "tls_secret_name": "p", "tls_issuer": TlsIssuer(name="ca", kind="Cluster")},  # type: ignore[arg-type]
     r"tls_issuer \('ca', 'Cluster'\) must name an Issuer or ClusterIssuer"),
])
def test_tls_args_are_checked(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_args("pool", _args(**overrides))


def test_matching_tls_args_pass() -> None:
    check_args("pool", _args(database_ca="db-tls", tls_secret_name="pool-tls", tls_issuer=TlsIssuer(name="ca")))
    check_args("pool", _args(read_write=PoolSettings()))  # and no TLS at all
