"""The Pooler under mocks: prod renders it and the workloads use it, auth without copied passwords, a
secure pod, probes, PDBs, HPAs, metrics, network policy; dev stays without a pooler."""

from __future__ import annotations

import configparser
import dataclasses
import re
from typing import Any

import pytest

from components.pooler import DEFAULT_EXPORTER_IMAGE, DEFAULT_IMAGE, LOOKUP_ROLE, PoolerArgs, PoolSettings, check_args
from components.pooler import auth, pgbouncer_ini as ini
from components.pooler.component import EXPORTER_PASSWORD_FILE, exporter_command
from components.shared.types import DatabaseConnection
from tests.checks import schema_problems, wiring_problems
from tests.harness import Recording
from tests.stacks import external_objects, run_stack, stack_file_config

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
SERVICE = "kubernetes:core/v1:Service"


@pytest.fixture(scope="module")
def prod() -> Recording:
    return run_stack("prod")


def _deployment(recording: Recording, name: str) -> dict[str, Any]:
    return recording.one(DEPLOYMENT, name).manifest()


def _containers(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in manifest["spec"]["template"]["spec"]["containers"]}


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def _service_host(recording: Recording, name: str) -> str:
    service = recording.one(SERVICE, name).manifest()["metadata"]
    return f"{service['name']}.{service['namespace']}.svc.cluster.local"


def _ini(recording: Recording, path: str) -> configparser.ConfigParser:
    text = recording.one(CONFIGMAP, "pooler-config").manifest()["data"][f"{path}.ini"]
    parser = configparser.ConfigParser(interpolation=None)
    parser.read_string(text)
    return parser


def test_prod_renders_both_paths_valid_and_wired(prod: Recording) -> None:
    pooler_objects = [r.manifest() for r in prod.kubernetes_objects() if r.name.startswith("pooler")]
    kinds = sorted(m["kind"] for m in pooler_objects)
    assert kinds == sorted(["ConfigMap", "Deployment", "Deployment", "Service", "Service", "PodDisruptionBudget",
                            "PodDisruptionBudget", "HorizontalPodAutoscaler", "HorizontalPodAutoscaler",
                            "NetworkPolicy"])
    assert schema_problems(pooler_objects) == []
    assert wiring_problems(prod.manifests(), external=external_objects(stack_file_config("prod"))) == []


def test_each_path_points_at_its_database_service(prod: Recording) -> None:
    for path, service in (("rw", "timescaledb-primary"), ("ro", "timescaledb-replicas")):
        config = _ini(prod, path)
        assert config["databases"]["app"] == f"host={_service_host(prod, service)} port=5432 dbname=app"
        pgbouncer = config["pgbouncer"]
        assert pgbouncer["pool_mode"] == "transaction"
        assert pgbouncer["auth_type"] == "scram-sha-256"
        assert pgbouncer["auth_user"] == LOOKUP_ROLE and pgbouncer["auth_query"] == auth.AUTH_QUERY
        assert pgbouncer["server_tls_sslmode"] == "disable"  # prod's database has no TLS Secret
    assert _ini(prod, "rw")["pgbouncer"]["default_pool_size"] == "20"
    assert _ini(prod, "ro")["pgbouncer"]["max_db_connections"] == "10"


def test_workloads_connect_through_the_pooler_and_migrations_directly(prod: Recording) -> None:
    rw, ro = _service_host(prod, "pooler-rw"), _service_host(prod, "pooler-ro")
    app_secret = next(r for r in prod.of_type(SECRET) if r.name == "timescaledb-app").manifest()["metadata"]["name"]
    for workload in ("generator", "consumer"):
        env = _env(_containers(_deployment(prod, f"{workload}-deployment"))[workload])
        assert env["PGHOST"] == {"name": "PGHOST", "value": rw}
        assert env["PGPORT"] == {"name": "PGPORT", "value": "5432"}
        assert env["PGUSER"]["value"] == "app" and env["PGDATABASE"]["value"] == "app"
        pod = _deployment(prod, f"{workload}-deployment")["spec"]["template"]["spec"]
        projected = [s["secret"]["name"] for v in pod["volumes"] if "projected" in v for s in v["projected"]["sources"]]
        assert app_secret in projected and "TSFLOW_PASSWORD_FILE" in env  # the password, as a file
    consumer = _env(_containers(_deployment(prod, "consumer-deployment"))["consumer"])
    assert consumer["TSFLOW_READ_DSN"]["value"] == f"host={ro} port=5432"
    job = prod.one("kubernetes:batch/v1:Job", "migrate").manifest()
    migrate_env = _env(job["spec"]["template"]["spec"]["containers"][0])
    assert migrate_env["PGHOST"]["value"] == prod.outputs["primaryHost"]  # the primary Service, direct


def test_auth_files_come_from_the_lookup_secret_never_a_copied_password(prod: Recording) -> None:
    lookup = prod.one(SECRET, "pooler-lookup").manifest()
    assert set(lookup["stringData"]) == {auth.PASSWORD_KEY, auth.USERLIST_KEY, auth.VERIFIER_KEY}
    password = lookup["stringData"][auth.PASSWORD_KEY]
    assert lookup["stringData"][auth.USERLIST_KEY] == f'"{LOOKUP_ROLE}" "{password}"\n'
    assert lookup["stringData"][auth.VERIFIER_KEY] == auth.stable_verifier(password)
    pod = _deployment(prod, "pooler-rw")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["auth"]["secret"]["secretName"] == lookup["metadata"]["name"]
    assert volumes["stats-password"]["secret"]["secretName"] == lookup["metadata"]["name"]
    app_passwords = [r.inputs["result"] for r in prod.of_type("random:index/randomPassword:RandomPassword")
                     if "pooler" not in r.name and "result" in r.inputs]
    config_text = "".join(prod.one(CONFIGMAP, "pooler-config").manifest()["data"].values())
    assert app_passwords and not any(p in config_text for p in app_passwords)


@pytest.mark.parametrize("path", ["rw", "ro"])
def test_pooler_pods_get_no_secret_through_the_environment(prod: Recording, path: str) -> None:
    """checkov CKV_K8S_35: Secrets reach the pooler pods as files only."""
    pod = _deployment(prod, f"pooler-{path}")["spec"]["template"]["spec"]
    containers = [*pod.get("initContainers", []), *pod["containers"]]
    assert {c["name"] for c in containers} == {"pgbouncer", "pgbouncer-exporter"}
    for container in containers:
        assert not [e["name"] for e in container.get("env", []) if "valueFrom" in e], container["name"]
        assert not container.get("envFrom"), container["name"]


@pytest.mark.parametrize("path", ["rw", "ro"])
def test_exporter_reads_the_lookup_password_from_its_own_secret_file(prod: Recording, path: str) -> None:
    manifest = _deployment(prod, f"pooler-{path}")
    lookup_secret = prod.one(SECRET, "pooler-lookup").manifest()["metadata"]["name"]
    volumes = {v["name"]: v for v in manifest["spec"]["template"]["spec"]["volumes"]}
    containers = _containers(manifest)
    exporter = containers["pgbouncer-exporter"]
    assert exporter["command"] == exporter_command() and exporter["command"][2].count(EXPORTER_PASSWORD_FILE) == 2
    # The file the command reads is the lookup Secret's password key, mounted into the exporter alone.
    (mount,) = [m for m in exporter["volumeMounts"] if EXPORTER_PASSWORD_FILE.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    source = volumes[mount["name"]]["secret"]
    relative = EXPORTER_PASSWORD_FILE.removeprefix(mount["mountPath"] + "/")
    assert source["secretName"] == lookup_secret
    assert source["items"] == [{"key": auth.PASSWORD_KEY, "path": relative}]
    assert mount["name"] not in {m["name"] for m in containers["pgbouncer"]["volumeMounts"]}
    # The connection string names the stats user and holds no password (lib/pq takes PGPASSWORD).
    connection = _env(exporter)["PGBOUNCER_EXPORTER_CONNECTION_STRING"]["value"]
    assert connection == f"postgres://{LOOKUP_ROLE}@127.0.0.1:{ini.LISTEN_PORT}/pgbouncer?sslmode=disable"
    pgbouncer = _ini(prod, path)["pgbouncer"]
    assert pgbouncer["stats_users"] == LOOKUP_ROLE and "admin_users" not in pgbouncer


def test_pooler_images_are_pinned_by_tag_and_digest(prod: Recording) -> None:
    """checkov CKV_K8S_43: the kubelet pulls by digest; the tag says which version that is."""
    digest = re.compile(r"^[^@\s]+:[0-9A-Za-z][0-9A-Za-z._-]*@sha256:[0-9a-f]{64}$")
    assert digest.match(DEFAULT_IMAGE) and DEFAULT_IMAGE.startswith("ghcr.io/cloudnative-pg/pgbouncer:1.25.2-")
    assert digest.match(DEFAULT_EXPORTER_IMAGE)
    assert DEFAULT_EXPORTER_IMAGE.startswith("quay.io/prometheuscommunity/pgbouncer-exporter:v0.12.1@")
    for path in ("rw", "ro"):
        images = {name: c["image"] for name, c in _containers(_deployment(prod, f"pooler-{path}")).items()}
        assert images == {"pgbouncer": DEFAULT_IMAGE, "pgbouncer-exporter": DEFAULT_EXPORTER_IMAGE}


def test_database_bootstrap_creates_the_lookup_role_from_the_verifier(prod: Recording) -> None:
    script = prod.one(CONFIGMAP, "timescaledb-patroni").manifest()["data"]["post_init.sh"]
    assert f"CREATE OR REPLACE FUNCTION {auth.LOOKUP_FUNCTION}(p_usename text)" in script
    assert f"cat /etc/timescaledb/secrets/{auth.VERIFIER_FILE}" in script
    assert script.index("\\connect app") < script.index(auth.LOOKUP_FUNCTION)
    pod = prod.one("kubernetes:apps/v1:StatefulSet").manifest()["spec"]["template"]["spec"]
    projected = next(v for v in pod["volumes"] if v["name"] == "bootstrap-secrets")["projected"]["sources"]
    items = [item for source in projected for item in source["secret"]["items"]]
    assert {"key": auth.VERIFIER_KEY, "path": auth.VERIFIER_FILE} in items


def test_dev_has_no_pooler_and_an_unchanged_bootstrap() -> None:
    dev = run_stack("dev")
    assert not [r for r in dev.resources if "pooler" in r.name]
    assert auth.LOOKUP_FUNCTION not in dev.one(CONFIGMAP, "timescaledb-patroni").manifest()["data"]["post_init.sh"]
    generator = _env(_containers(_deployment(dev, "generator-deployment"))["generator"])
    assert generator["PGHOST"]["value"] == dev.outputs["primaryHost"]


def test_pod_is_hardened_pinned_and_probed(prod: Recording) -> None:
    manifest = _deployment(prod, "pooler-rw")
    pod = manifest["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 998
    assert pod["automountServiceAccountToken"] is False
    for container in pod["containers"]:
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["requests"].keys() >= {"cpu", "memory"}
        assert container["livenessProbe"] and container["readinessProbe"]
        assert ":" in container["image"] and not container["image"].endswith(":latest")
    pgbouncer = _containers(manifest)["pgbouncer"]
    assert pgbouncer["image"] == DEFAULT_IMAGE
    assert pgbouncer["lifecycle"]["preStop"]["exec"]["command"][-1].startswith("sleep 5; kill -INT 1;")
    assert pgbouncer["command"] == ["/usr/bin/pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]  # PID 1
    # The pooler pods are database clients: the database NetworkPolicy admits them.
    client_labels = prod.outputs["clientLabels"]
    assert client_labels.items() <= manifest["spec"]["template"]["metadata"]["labels"].items()


def test_hpa_ready_scale_targets_and_metrics(prod: Recording) -> None:
    hpas = [r.manifest() for r in prod.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
            if r.name.startswith("pooler")]
    targets = sorted(h["spec"]["scaleTargetRef"]["name"] for h in hpas)
    deployments = sorted(_deployment(prod, f"pooler-{p}")["metadata"]["name"] for p in ("rw", "ro"))
    assert targets == deployments
    assert all(h["spec"]["minReplicas"] == 2 and h["spec"]["maxReplicas"] == 4 for h in hpas)
    assert "spec.replicas" in prod.one(DEPLOYMENT, "pooler-rw").ignore_changes
    monitor = next(r.manifest() for r in prod.of_type("kubernetes:monitoring.coreos.com/v1:PodMonitor")
                   if r.name.endswith("pgbouncer"))
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "exporter"
    rules = prod.one("kubernetes:monitoring.coreos.com/v1:PrometheusRule").manifest()
    assert "timescale_k8s.pooler.rules" in [g["name"] for g in rules["spec"]["groups"]]


def test_network_policy_admits_clients_and_scrapers_only(prod: Recording) -> None:
    policy = prod.one("kubernetes:networking.k8s.io/v1:NetworkPolicy", "pooler").manifest()["spec"]
    (clients, scrapers) = policy["ingress"]
    assert clients["from"] == [{"podSelector": {"matchLabels": prod.outputs["clientLabels"]}}]
    assert clients["ports"] == [{"port": 6432, "protocol": "TCP"}]
    assert scrapers["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_tls_database_requires_tls_on_both_sides_and_verifies_the_server() -> None:
    text = ini.pgbouncer_ini(ini.IniSettings(database="app", host="db", port=5432, pool=PoolSettings(), tls=True))
    config = configparser.ConfigParser(interpolation=None)
    config.read_string(text)
    assert config["pgbouncer"]["client_tls_sslmode"] == "require"  # plaintext clients are refused
    assert config["pgbouncer"]["server_tls_sslmode"] == "verify-full"
    assert config["pgbouncer"]["server_tls_ca_file"] == f"{ini.TLS_DIR}/{ini.SERVER_CA_FILE}"
    assert config["pgbouncer"]["client_tls_cert_file"] == f"{ini.TLS_DIR}/tls.crt"


def _args(**overrides: Any) -> PoolerArgs:
    database = DatabaseConnection(read_write_host=None, read_only_host=None, port=5432, database="app",  # type: ignore[arg-type]
                                  user="app", secret_name=None, client_labels={"c": "true"})  # type: ignore[arg-type]
    lookup = auth.LookupCredentials(role=LOOKUP_ROLE, secret_name=None)  # type: ignore[arg-type]
    return dataclasses.replace(PoolerArgs(namespace="ns", database=database, lookup=lookup), **overrides)


@pytest.mark.parametrize("overrides, message", [
    ({"read_write": PoolSettings(pool_size=0)}, r"read_write\.pool_size \(0\) must be between 1 and 1000"),
    ({"read_only": PoolSettings(mode="statement")}, r"read_only\.mode \('statement'\) must be one of"),  # type: ignore[arg-type]
    ({"image": "ghcr.io/cloudnative-pg/pgbouncer:latest"}, r"image .* floating tag 'latest'"),
    ({"max_client_connections": 5}, r"max_client_connections \(5\) must be between 10 and 100000"),
])
def test_bad_args_are_rejected_by_field(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_args("pooler", _args(**overrides))


def test_userlist_and_sql_builders_refuse_unsafe_values() -> None:
    with pytest.raises(ValueError, match="quotes or spaces"):
        auth.userlist_line(LOOKUP_ROLE, 'pa"ss')
    with pytest.raises(ValueError, match="database"):
        auth.lookup_bootstrap_sql(database="app; DROP", verifier_path="/x", excluded_roles=())
    with pytest.raises(ValueError, match="verifier_path"):
        auth.lookup_bootstrap_sql(database="app", verifier_path="/x`rm`", excluded_roles=())


def test_scram_verifier_matches_rfc_7677_test_vector() -> None:
    # RFC 7677 section 3: user "user", password "pencil", salt W22ZaJ0SNY7soEsUEjb6gQ==, 4096 iterations.
    import base64

    verifier = auth.scram_verifier("pencil", salt=base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="))
    stored, server = verifier.split("$")[2].split(":")
    # ServerSignature = HMAC(ServerKey, AuthMessage) = 6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4= (RFC 7677)
    import hashlib
    import hmac

    auth_message = (b"n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0")
    signature = hmac.new(base64.b64decode(server), auth_message, hashlib.sha256).digest()
    assert base64.b64encode(signature).decode() == "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
    assert verifier.startswith("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$") and stored



def test_single_instance_tls_pooler_mounts_its_certificate_and_has_no_pdb() -> None:
    from components.pooler import Pooler
    from tests.harness import run_program
    from tests.workload.test_workload import fake_database

    def program() -> None:
        database = dataclasses.replace(fake_database(), ca_secret_name="db-tls")
        lookup = auth.LookupCredentials(role=LOOKUP_ROLE, secret_name=database.secret_name)
        Pooler("pool", PoolerArgs(namespace="apps", database=database, lookup=lookup, tls_secret_name="pool-tls",
                                  read_write=PoolSettings(instances=1), read_only=PoolSettings(instances=1)))

    recording = run_program(program)
    assert not recording.of_type("kubernetes:policy/v1:PodDisruptionBudget")
    assert not recording.of_type("kubernetes:autoscaling/v2:HorizontalPodAutoscaler")
    assert not recording.of_type("kubernetes:cert-manager.io/v1:Certificate")  # no issuer: the Secret is yours
    pod = _deployment(recording, "pool-rw")["spec"]["template"]["spec"]
    tls = next(v for v in pod["volumes"] if v["name"] == "tls")["projected"]
    assert [s["secret"]["name"] for s in tls["sources"]] == ["pool-tls", "db-tls"] and tls["defaultMode"] == 0o440
    mounts = {m["name"]: m["mountPath"] for m in _containers(_deployment(recording, "pool-rw"))["pgbouncer"]["volumeMounts"]}
    assert mounts["tls"] == ini.TLS_DIR
    text = recording.one(CONFIGMAP, "pool-config").manifest()["data"]["rw.ini"]
    assert "server_tls_sslmode = verify-full" in text and "host=tsdb-rw.apps.svc.cluster.local" in text
    assert sorted(r.manifest()["metadata"].get("name") for r in recording.of_type(SERVICE)) == ["pool-ro", "pool-rw"]
