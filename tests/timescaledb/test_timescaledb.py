"""TimescaleDB component under mocks: HA wiring, Patroni contract, secrets by reference, safety flags."""

from __future__ import annotations

import copy
import json
from typing import Any

import pulumi
import pytest
import yaml

from components.timescaledb import patroni_config as pc
from components.timescaledb import role_agent
from components.timescaledb import StorageArgs, TimescaleDB, TimescaleDBArgs
from components.shared.types import ConnectionSecretKeys, Resources
from tests.checks import schema_problems, selects, wiring_problems
from tests.harness import Recording, run_program, walk_strings

NS = "data"
STS = "kubernetes:apps/v1:StatefulSet"
SVC = "kubernetes:core/v1:Service"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"
NETPOL = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
ROLE = "kubernetes:rbac.authorization.k8s.io/v1:Role"
PASSWORD = "random:index/randomPassword:RandomPassword"
COMPONENT = "timescale-k8s:index:TimescaleDB"


def run(name: str = "tsdb", *, export: bool = False, **overrides: Any) -> Recording:
    args = TimescaleDBArgs(namespace=NS, **overrides)

    def program() -> None:
        db = TimescaleDB(name, args)
        if export:
            pulumi.export("app_password", db.app_password)
            pulumi.export("read_write_host", db.app_connection.read_write_host)
            pulumi.export("read_only_host", db.app_connection.read_only_host)
            pulumi.export("reader_secret", db.reader_connection.secret_name)
            pulumi.export("app_secret", db.app_connection.secret_name)
            pulumi.export("scale_target_name", db.scale_target.name)
            pulumi.export("superuser_secret", db.superuser_secret_name)

    return run_program(program, stack="dev")


def manifest(recording: Recording, type_token: str, name: str = "") -> dict[str, Any]:
    return recording.one(type_token, name).manifest()


def pod_spec(recording: Recording) -> dict[str, Any]:
    return manifest(recording, STS)["spec"]["template"]["spec"]


def container(recording: Recording, name: str) -> dict[str, Any]:
    found = [c for c in pod_spec(recording)["containers"] if c["name"] == name]
    assert len(found) == 1, f"container {name} missing"
    return found[0]


def env_of(container_manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container_manifest.get("env") or []}


def patroni_file(recording: Recording) -> dict[str, Any]:
    return yaml.safe_load(manifest(recording, CONFIG_MAP)["data"][pc.CONFIG_FILE])


def as_labelled_by_patroni(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the cluster looks like once Patroni has labelled its pods: one primary, the rest replicas."""
    result = [m for m in manifests if m["kind"] != "StatefulSet"]
    for sts in (m for m in manifests if m["kind"] == "StatefulSet"):
        for role in (pc.LEADER_LABEL_VALUE, pc.FOLLOWER_LABEL_VALUE):
            labelled = copy.deepcopy(sts)
            labelled["metadata"]["name"] += f"-as-{role}"
            labelled["spec"]["template"]["metadata"]["labels"][pc.ROLE_LABEL] = role
            result.append(labelled)
    return result


@pytest.fixture(scope="module", params=[1, 3], ids=["one-member", "three-members"])
def cluster(request: pytest.FixtureRequest) -> tuple[int, Recording]:
    return request.param, run(replicas=request.param, export=True)


# -- structure and wiring ------------------------------------------------------------------------


def test_every_child_exists_and_is_parented_to_the_component(cluster: tuple[int, Recording]) -> None:
    replicas, recording = cluster
    component = recording.one(COMPONENT)
    children = recording.descendants(component.urn)
    assert children, "the component registered no children"
    counts: dict[str, int] = {}
    for child in children:
        counts[child.type] = counts.get(child.type, 0) + 1
    assert counts[STS] == 1 and counts[SVC] == 6 and counts[SECRET] == 4 and counts[PASSWORD] == 7
    assert counts[CONFIG_MAP] == 1 and counts[ROLE] == 1 and counts[NETPOL] == 1
    assert counts["kubernetes:core/v1:ServiceAccount"] == 1
    assert counts["kubernetes:rbac.authorization.k8s.io/v1:RoleBinding"] == 1
    assert counts.get(PDB, 0) == (1 if replicas > 1 else 0)
    assert {r.urn for r in recording.resources} - {c.urn for c in children} == {component.urn}
    assert all(r.name.startswith("tsdb-") for r in children)


def test_manifests_pass_strict_schema_and_wiring_checks(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    manifests = recording.manifests()
    assert len(manifests) >= 12
    assert schema_problems(manifests) == []
    assert wiring_problems(as_labelled_by_patroni(manifests)) == []


def test_primary_service_is_the_leader_lock_not_a_label(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    primary = manifest(recording, SVC, "primary")
    config = patroni_file(recording)
    # Patroni (Endpoints mode) writes the lock holder's address into Endpoints named <scope>: the Service
    # of that name without a selector routes only there, whatever labels or readiness a dead pod keeps.
    assert config["kubernetes"]["use_endpoints"] is True
    assert env_of(container(recording, "timescaledb"))["PATRONI_KUBERNETES_USE_ENDPOINTS"]["value"] == "true"
    assert primary["metadata"]["name"] == config["scope"] == "tsdb"
    assert "selector" not in primary["spec"]
    assert [p["name"] for p in primary["spec"]["ports"]] == [p["name"] for p in config["kubernetes"]["ports"]]
    assert primary["metadata"]["annotations"]["pulumi.com/skipAwait"] == "true"
    # Every other Endpoints Patroni keeps has a selector-less Service of its name, or kube-controller-manager's
    # endpoints controller deletes it when it starts (the sync record lost: a failover may pick an async replica).
    for suffix in ("config", "sync", "failover"):
        keeper = manifest(recording, SVC, f"patroni-{suffix}")
        assert keeper["metadata"]["name"] == f"tsdb-{suffix}" and keeper["spec"] == {"clusterIP": "None"}


def test_every_endpoints_patroni_keeps_needs_a_service_of_its_name(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    manifests = recording.manifests()
    for name in ("tsdb-sync", "tsdb-failover", "tsdb-config"):
        without = [m for m in manifests if not (m["kind"] == "Service" and m["metadata"]["name"] == name)]
        problems = wiring_problems(as_labelled_by_patroni(without))
        assert any(f"Patroni keeps Endpoints {name!r}, which no Service of that name owns" in p for p in problems), problems


def test_a_service_without_a_selector_needs_patroni_to_write_its_endpoints(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    manifests = recording.manifests()
    for service in (m for m in manifests if m["kind"] == "Service" and "selector" not in m["spec"]):
        renamed = copy.deepcopy(service)
        renamed["metadata"]["name"] = "not-the-scope"
        problems = wiring_problems(as_labelled_by_patroni([*[m for m in manifests if m is not service], renamed]))
        assert any("no pod writes Endpoints named 'not-the-scope'" in p for p in problems)
    primary = copy.deepcopy(manifest(recording, SVC, "primary"))
    primary["spec"]["ports"][0]["name"] = "pg"
    others = [m for m in manifests if m["metadata"].get("name") != primary["metadata"]["name"] or m["kind"] != "Service"]
    assert any("ports ['pg'] are not all in the Endpoints" in p for p in wiring_problems(as_labelled_by_patroni([*others, primary])))


def test_read_only_service_uses_replicas_or_falls_back_to_all_members(cluster: tuple[int, Recording]) -> None:
    replicas, recording = cluster
    selector = manifest(recording, SVC, "replicas")["spec"]["selector"]
    labels = manifest(recording, STS)["spec"]["template"]["metadata"]["labels"]
    assert selects(selector, {**labels, pc.ROLE_LABEL: "replica"})
    assert selects(selector, {**labels, pc.ROLE_LABEL: "primary"}) == (replicas == 1)


def test_headless_service_governs_the_statefulset(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    headless = manifest(recording, SVC, "headless")
    sts = manifest(recording, STS)
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    for role in ("replicas", "headless"):
        ports = {p["name"]: p for p in manifest(recording, SVC, role)["spec"]["ports"]}
        assert ports["postgresql"]["port"] == 5432 and ports["postgresql"]["targetPort"] == "postgresql"
    primary = {p["name"]: p for p in manifest(recording, SVC, "primary")["spec"]["ports"]}
    assert primary["postgresql"]["port"] == 5432 and primary["postgresql"]["targetPort"] == 5432


def test_container_ports_are_named_as_consumers_expect(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    ports = {p["name"]: p["containerPort"] for c in pod_spec(recording)["containers"] for p in c.get("ports", [])}
    assert ports == {"postgresql": 5432, "patroni": 8008, "exporter": 9187}, "the role agent listens on nothing"


def test_probes_hit_patroni_rest_api_on_declared_ports(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    for c in pod_spec(recording)["containers"]:
        declared = {p["name"] for p in c.get("ports", [])}
        for probe in ("livenessProbe", "readinessProbe"):
            if c["name"] == role_agent.CONTAINER:  # no port: its probes check its heartbeat file
                assert c[probe]["exec"]["command"][:2] == ["/bin/sh", "-c"], probe
                continue
            assert c[probe]["httpGet"]["port"] in declared, f"{c['name']} {probe}"
    patroni = container(recording, "timescaledb")
    # Readiness must not need a live replication stream (replicas keep serving reads while a dead
    # primary is replaced); it bounds lag by the same 32MiB that bars promotion.
    assert patroni["readinessProbe"]["httpGet"] == {"path": f"/read-only?lag={pc.MAXIMUM_LAG_BYTES}", "port": "patroni"}
    assert patroni["livenessProbe"]["httpGet"] == {"path": "/liveness", "port": "patroni"}
    startup = patroni["startupProbe"]
    assert startup["httpGet"] == {"path": "/liveness", "port": "patroni"}
    # Fine-grained (a start is not delayed by a probe period) with the same 5-minute budget as before.
    assert startup["periodSeconds"] == 1 and startup["periodSeconds"] * startup["failureThreshold"] == 300


# -- the Patroni contract --------------------------------------------------------------------------


def test_patroni_env_uses_documented_names_and_downward_api(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    env = env_of(container(recording, "timescaledb"))
    field = {name: e["valueFrom"]["fieldRef"]["fieldPath"] for name, e in env.items() if "fieldRef" in e.get("valueFrom", {})}
    assert field["PATRONI_NAME"] == "metadata.name"
    assert field["PATRONI_KUBERNETES_NAMESPACE"] == "metadata.namespace"
    assert field["PATRONI_KUBERNETES_POD_IP"] == "status.podIP"
    assert env["PATRONI_SCOPE"]["value"] == "tsdb"
    assert env["PATRONI_KUBERNETES_USE_ENDPOINTS"]["value"] == "true"
    assert env["PATRONI_POSTGRESQL_DATA_DIR"]["value"] == pc.DATA_DIR
    assert env["PATRONI_POSTGRESQL_LISTEN"]["value"] == "0.0.0.0:5432"
    assert env["PATRONI_RESTAPI_LISTEN"]["value"] == "0.0.0.0:8008"
    assert env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"]["value"] == "$(POD_IP):5432"
    assert env["PATRONI_RESTAPI_CONNECT_ADDRESS"]["value"] == "$(POD_IP):8008"
    names = list(env)
    assert names.index("POD_IP") < names.index("PATRONI_POSTGRESQL_CONNECT_ADDRESS"), "$(POD_IP) must be defined first"
    assert not [name for name, e in env.items() if "secretKeyRef" in e.get("valueFrom", {})], "secrets are files"
    command = " ".join(container(recording, "timescaledb")["command"])
    for secret_env in ("PATRONI_SUPERUSER_PASSWORD", "PATRONI_REPLICATION_PASSWORD", "PATRONI_REWIND_PASSWORD",
                       "PATRONI_RESTAPI_PASSWORD"):
        assert secret_env not in env and f'{secret_env}="$$(< /etc/timescaledb/patroni-secrets/' in command
    assert env["PATRONI_SUPERUSER_USERNAME"]["value"] == pc.SUPERUSER
    assert env["PATRONI_REPLICATION_USERNAME"]["value"] == pc.REPLICATION_USER


def test_patroni_labels_select_the_member_pods(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    env = env_of(container(recording, "timescaledb"))
    labels = json.loads(env["PATRONI_KUBERNETES_LABELS"]["value"])
    template = manifest(recording, STS)["spec"]["template"]["metadata"]["labels"]
    config = patroni_file(recording)
    assert labels == config["kubernetes"]["labels"]
    # Patroni lists pods by labels + scope_label=scope; every member must match.
    assert all(template[k] == v for k, v in labels.items())
    assert template[config["kubernetes"]["scope_label"]] == config["scope"] == "tsdb"


def test_rbac_grants_exactly_what_the_endpoints_dcs_needs(cluster: tuple[int, Recording]) -> None:
    replicas, recording = cluster
    rules = {(tuple(r["resources"]), tuple(sorted(r["verbs"]))): r.get("resourceNames")
             for r in manifest(recording, ROLE)["rules"]}
    # Endpoints mode: no ConfigMaps, no Services (the component creates the keepers), no delete; writes only
    # to Patroni's own Endpoints and to the member pods (patroni/dcs/kubernetes.py patches self._name).
    assert rules == {
        (("endpoints",), ("create", "get", "list", "watch")): None,
        (("endpoints",), ("patch",)): ["tsdb", "tsdb-config", "tsdb-sync", "tsdb-failover"],
        (("pods",), ("get", "list", "watch")): None,
        (("pods",), ("patch",)): [f"tsdb-{ordinal}" for ordinal in range(replicas)],
    }
    assert all("*" not in verbs for _, verbs in rules)
    account = manifest(recording, "kubernetes:core/v1:ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    spec = pod_spec(recording)
    assert spec["automountServiceAccountToken"] is True and spec["serviceAccountName"] == account["metadata"]["name"]


def test_bootstrap_script_and_config_come_from_the_configmap(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    config_map = manifest(recording, CONFIG_MAP)
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb;" in config_map["data"][pc.POST_INIT_FILE]
    config = patroni_file(recording)
    assert config["bootstrap"]["post_init"] == f"{pc.SCRIPTS_DIR}/{pc.POST_INIT_FILE}"
    mounts = {m["mountPath"]: m["name"] for m in container(recording, "timescaledb")["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(recording)["volumes"]}
    assert volumes[mounts[pc.SCRIPTS_DIR]]["configMap"]["name"] == config_map["metadata"]["name"]
    assert volumes[mounts[pc.CONFIG_DIR]]["configMap"]["name"] == config_map["metadata"]["name"]
    command = " ".join(container(recording, "timescaledb")["command"])
    assert f"exec patroni {pc.CONFIG_DIR}/{pc.CONFIG_FILE}" in command


# -- secrets ---------------------------------------------------------------------------------------


def test_connection_secrets_hold_every_key_and_point_at_the_services(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    outputs = recording.outputs
    assert outputs["read_write_host"] == f"{manifest(recording, SVC, 'primary')['metadata']['name']}.{NS}.svc.cluster.local"
    assert outputs["read_only_host"] == f"{manifest(recording, SVC, 'replicas')['metadata']['name']}.{NS}.svc.cluster.local"
    for role, user, host in (("app", "app", "read_write_host"), ("reader", "reader", "read_only_host")):
        secret = manifest(recording, SECRET, f"tsdb-{role}")
        data = secret["stringData"]
        assert set(data) == set(ConnectionSecretKeys.ALL)
        assert data["user"] == user and data["dbname"] == "app" and data["port"] == "5432"
        assert data["host"] == outputs[host]
        assert data["uri"] == f"postgresql://{user}:{data['password']}@{outputs[host]}:5432/app"
        assert recording.one(SECRET, f"tsdb-{role}").secret_paths, "stringData must be marked secret"
    assert outputs["app_secret"] == manifest(recording, SECRET, "tsdb-app")["metadata"]["name"]
    assert outputs["reader_secret"] == manifest(recording, SECRET, "tsdb-reader")["metadata"]["name"]
    assert outputs["superuser_secret"] == manifest(recording, SECRET, "tsdb-superuser")["metadata"]["name"]


def test_no_password_in_plain_text_outside_secrets(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    passwords = recording.mock_passwords()
    assert len(passwords) == 7
    checked = [r for r in recording.resources if r.type not in (SECRET, PASSWORD)]
    assert checked
    for resource in checked:
        leaked = [p for p in passwords if any(p in s for s in walk_strings(resource.inputs))]
        assert not leaked, f"{resource.type} {resource.name} contains a password"
    secret_values = {v for r in recording.of_type(SECRET) for v in r.inputs["stringData"].values()}
    assert set(passwords) <= secret_values, "every password must be stored in some Secret"


def test_app_password_output_is_secret(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    assert "app_password" in recording.secret_outputs
    assert recording.outputs["app_password"] in recording.mock_passwords()


def test_every_secret_reference_resolves_to_an_existing_key(cluster: tuple[int, Recording]) -> None:
    _, recording = cluster
    secrets = {r.manifest()["metadata"]["name"]: set(r.inputs["stringData"]) for r in recording.of_type(SECRET)}
    refs = [e["valueFrom"]["secretKeyRef"] for c in pod_spec(recording)["containers"]
            for e in c.get("env") or [] if "secretKeyRef" in e.get("valueFrom", {})]
    refs += [s["secret"] for v in pod_spec(recording)["volumes"] if "projected" in v for s in v["projected"]["sources"]]
    assert len(refs) >= 7
    for ref in refs:
        keys = [ref["key"]] if "key" in ref else [item["key"] for item in ref["items"]]
        assert all(key in secrets[ref["name"]] for key in keys), ref


# -- outputs for other components ------------------------------------------------------------------


def test_outputs_describe_scaling_and_scraping(cluster: tuple[int, Recording]) -> None:
    replicas, recording = cluster
    assert recording.outputs["scale_target_name"] == manifest(recording, STS)["metadata"]["name"] == "tsdb"
    selector = manifest(recording, STS)["spec"]["selector"]["matchLabels"]

    captured: list[TimescaleDB] = []
    run_program(lambda: captured.append(TimescaleDB("tsdb", TimescaleDBArgs(namespace=NS, replicas=replicas))))
    db = captured[0]
    assert db.scale_target.min_replicas_floor == replicas and db.scale_target.stateful is True
    assert db.scale_target.requested_resources == frozenset({"cpu", "memory"})
    assert {(t.job, t.port_name, t.path) for t in db.scrape_targets} == {
        ("postgres-exporter", "exporter", "/metrics"), ("patroni", "patroni", "/metrics")}
    assert all(dict(t.pod_labels) == selector for t in db.scrape_targets)
    assert db.pod_labels == selector and db.port == 5432
    assert db.client_labels == {"timescale-k8s.io/tsdb-client": "true"}
    assert db.app_connection.client_labels == db.reader_connection.client_labels == db.client_labels
    assert (db.app_connection.user, db.reader_connection.user) == ("app", "reader")


# -- safety flags ----------------------------------------------------------------------------------


def test_protect_guards_data_bearing_children() -> None:
    recording = run(protect=True)
    guarded = [recording.one(STS), recording.one(CONFIG_MAP), *recording.of_type(SECRET), *recording.of_type(PASSWORD)]
    assert len(guarded) == 13
    for resource in guarded:
        assert resource.protect and resource.retain_on_delete, resource.name
    assert not recording.one(SVC, "primary").protect
    assert recording.one(STS).delete_before_replace is False


def test_unprotected_stack_can_be_torn_down() -> None:
    recording = run(protect=False)
    assert recording.resources
    assert not any(r.protect or r.retain_on_delete for r in recording.resources)


def test_statefulset_keeps_pvcs_and_a_fixed_name() -> None:
    sts = manifest(run(), STS)
    assert sts["metadata"]["name"] == "tsdb"
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    assert all("emptyDir" not in v for v in sts["spec"]["template"]["spec"]["volumes"] if v["name"] in ("data", "wal"))
    assert [c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]] == ["data"]


def test_patroni_may_patch_every_member_the_autoscaler_can_start() -> None:
    role = manifest(run(autoscaled=True, max_replicas=5, replicas=2), ROLE)
    patchable = next(r["resourceNames"] for r in role["rules"] if r["resources"] == ["pods"] and r["verbs"] == ["patch"])
    assert patchable == [f"tsdb-{ordinal}" for ordinal in range(5)]


@pytest.mark.parametrize(("overrides", "message"), [
    ({"autoscaled": True}, r"max_replicas is required with autoscaled: set it to the HPA's maxReplicas"),
    ({"replicas": 3, "max_replicas": 2}, r"max_replicas \(2\) must be an integer from replicas \(3\) to"),
    ({"max_replicas": True}, r"max_replicas \(True\) must be an integer"),
])
def test_member_bound_is_checked(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run(**overrides)


@pytest.mark.parametrize("autoscaled", [True, False])
def test_autoscaled_replica_count_is_left_to_the_hpa(autoscaled: bool) -> None:
    sts = run(autoscaled=autoscaled, max_replicas=4 if autoscaled else None, replicas=2).one(STS)
    assert sts.ignore_changes == (["spec.replicas"] if autoscaled else [])
    assert sts.inputs["spec"]["replicas"] == 2


def test_disruption_budget_allows_one_member_down() -> None:
    pdb = manifest(run(replicas=3), PDB)
    assert pdb["spec"]["maxUnavailable"] == 1


# -- storage and tuning ----------------------------------------------------------------------------


def test_separate_wal_volume_is_claimed_used_and_sizes_max_wal_size() -> None:
    recording = run(storage=StorageArgs(data_size="50Gi", wal_size="10Gi", storage_class="fast-ssd"))
    sts = manifest(recording, STS)
    claims = {c["metadata"]["name"]: c["spec"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert claims["wal"]["resources"]["requests"]["storage"] == "10Gi"
    assert claims["data"]["storageClassName"] == claims["wal"]["storageClassName"] == "fast-ssd"
    mounts = {m["name"]: m["mountPath"] for m in container(recording, "timescaledb")["volumeMounts"]}
    assert mounts["wal"] == pc.WAL_MOUNT
    config = patroni_file(recording)
    assert {"waldir": pc.WAL_DIR} in config["bootstrap"]["initdb"]
    assert config["postgresql"]["parameters"]["max_wal_size"] == "6GB"  # 60% of the 10Gi WAL volume


def test_without_wal_volume_wal_is_budgeted_from_a_quarter_of_the_data_volume() -> None:
    config = patroni_file(run(storage=StorageArgs(data_size="40Gi")))
    assert config["postgresql"]["parameters"]["max_wal_size"] == "6GB"  # 60% of 10Gi


def test_tuning_follows_container_resources_and_user_overrides_win() -> None:
    recording = run(
        resources=Resources(cpu_request="2", memory_request="8Gi"),
        postgresql_parameters={"work_mem": "64MB", "max_connections": "200"},
    )
    config = patroni_file(recording)
    local, dcs = config["postgresql"]["parameters"], config["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert local["shared_buffers"] == "2GB" and local["effective_cache_size"] == "6GB"
    assert local["work_mem"] == "64MB"
    assert dcs["max_connections"] == "200"
    assert dcs["max_worker_processes"] == str(3 + 16 + 2)


def test_config_change_rolls_the_pods_through_a_checksum() -> None:
    def checksum(recording: Recording) -> str:
        return manifest(recording, STS)["spec"]["template"]["metadata"]["annotations"]["timescale-k8s.io/patroni-config-sha256"]

    assert checksum(run()) == checksum(run())
    assert checksum(run()) != checksum(run(postgresql_parameters={"work_mem": "8MB"}))
    # Cluster-wide (DCS) parameters are the reconciler's: it restarts members in a safe order, so they
    # must not roll every pod at once; neither do bootstrap-only changes (post_init, initdb).
    assert checksum(run()) == checksum(run(postgresql_parameters={"max_connections": "300"}))
    assert checksum(run()) == checksum(run(app_user="owner"))


# -- scheduling, security, network ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ["preferred", "required"])
def test_anti_affinity_mode(mode: str) -> None:
    affinity = pod_spec(run(anti_affinity=mode, replicas=3))["affinity"]["podAntiAffinity"]
    key = f"{mode}DuringSchedulingIgnoredDuringExecution"
    assert list(affinity) == [key]


def test_pods_run_as_the_image_postgres_user_with_locked_down_containers() -> None:
    recording = run()
    spec = pod_spec(recording)
    assert spec["securityContext"]["runAsUser"] == 1000 and spec["securityContext"]["fsGroup"] == 1000
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    for c in spec["containers"]:
        context = c["securityContext"]
        assert context["runAsNonRoot"] and not context["allowPrivilegeEscalation"]
        assert context["capabilities"]["drop"] == ["ALL"] and context["readOnlyRootFilesystem"]
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert ":" in c["image"] and not c["image"].endswith(":latest")
    writable = {m["mountPath"] for m in container(recording, "timescaledb")["volumeMounts"] if not m.get("readOnly")}
    assert {"/tmp", pc.SOCKET_DIR, pc.DATA_MOUNT} <= writable
    patroni = container(recording, "timescaledb")
    assert patroni["lifecycle"]["preStop"]["exec"]["command"][-1] == "CHECKPOINT"
    assert spec["terminationGracePeriodSeconds"] == 60


def test_tls_secret_turns_on_server_tls() -> None:
    recording = run(tls_secret_name="tsdb-tls")
    volumes = {v["name"]: v for v in pod_spec(recording)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(recording, "timescaledb")["volumeMounts"]}
    assert volumes[mounts[pc.TLS_DIR]]["secret"] == {"secretName": "tsdb-tls", "defaultMode": 0o440}
    parameters = patroni_file(recording)["postgresql"]["parameters"]
    assert parameters["ssl"] == "on" and parameters["ssl_key_file"] == f"{pc.TLS_DIR}/tls.key"
    assert "ssl" not in patroni_file(run())["postgresql"]["parameters"]


def test_exporter_reads_its_password_from_a_mounted_file() -> None:
    recording = run()
    exporter = container(recording, "postgres-exporter")
    env = env_of(exporter)
    assert env["DATA_SOURCE_USER"]["value"] == pc.MONITOR_USER
    assert "DATA_SOURCE_PASS" not in env
    assert env["DATA_SOURCE_PASS_FILE"]["value"] == "/etc/postgres-exporter/secrets/monitor-password"
    assert [m["mountPath"] for m in exporter["volumeMounts"]] == ["/etc/postgres-exporter/secrets", "/etc/postgres-exporter/queries"]
    volume = next(v for v in pod_spec(recording)["volumes"] if v["name"] == exporter["volumeMounts"][0]["name"])
    assert [s["secret"]["items"] for s in volume["projected"]["sources"]] == [[{"key": "monitor-password", "path": "monitor-password"}]]
    assert env["DATA_SOURCE_URI"]["value"].startswith("127.0.0.1:5432/")


def _ingress(recording: Recording) -> list[dict[str, Any]]:
    policy = manifest(recording, NETPOL)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    return policy["spec"]["ingress"]


def test_network_policy_admits_clients_members_and_scrapers_only() -> None:
    recording = run(monitoring_namespace="monitoring")
    rules = {tuple(sorted(p["port"] for p in rule["ports"])): rule["from"] for rule in _ingress(recording)}
    assert {"podSelector": {"matchLabels": {"timescale-k8s.io/tsdb-client": "true"}}} in rules[(5432,)]
    members = manifest(recording, STS)["spec"]["selector"]
    assert rules[(5432, 8008)] == [{"podSelector": members}]
    assert rules[(8008, 9187)] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]


def test_network_policy_without_monitoring_namespace_keeps_scrapes_in_namespace() -> None:
    rules = {tuple(sorted(p["port"] for p in rule["ports"])): rule["from"] for rule in _ingress(run())}
    assert rules[(8008, 9187)] == [{"podSelector": {}}]
    assert all("namespaceSelector" not in peer for peers in rules.values() for peer in peers)


# -- validation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"replicas": 0}, r"replicas \(0\) must be an integer from 1 to 9"),
        ({"replicas": 10**30}, r"replicas \(10+\) must be an integer from 1 to 9"),
        ({"replicas": True}, r"replicas \(True\)"),
        ({"image": "timescale/timescaledb-ha"}, r"image \('timescale/timescaledb-ha'\) is not pinned"),
        ({"exporter_image": "quay.io/prometheuscommunity/postgres-exporter:latest"}, r"exporter_image .* 'latest'"),
        ({"storage": StorageArgs(data_size="10GB!")}, r"storage.data_size \('10GB!'\)"),
        ({"storage": StorageArgs(data_size="500Mi")}, r"storage.data_size \(500Mi\) must be at least 1Gi"),
        ({"storage": StorageArgs(wal_size="10m")}, r"storage.wal_size \('10m'\)"),
        ({"storage": StorageArgs(storage_class="Fast SSD")}, r"storage.storage_class"),
        ({"postgresql_parameters": {"bad name": "1"}}, r"invalid parameter name 'bad name'"),
        ({"postgresql_parameters": {"listen_addresses": "*"}}, r"managed by Patroni"),
        ({"app_user": "App"}, r"app_user \('App'\)"),
        ({"reader_user": "app"}, r"reader_user \('app'\) must differ from app_user \('app'\)"),
        ({"app_user": "postgres"}, r"app_user \('postgres'\) is reserved"),
        ({"database": "my-db"}, r"database \('my-db'\)"),
        ({"anti_affinity": "sometimes"}, r"anti_affinity \('sometimes'\)"),
        ({"termination_grace_seconds": 5}, r"termination_grace_seconds \(5\)"),
        ({"monitoring_namespace": "Monitoring"}, r"monitoring_namespace \('Monitoring'\)"),
        ({"resources": Resources(cpu_request="1", memory_request="2Gi", memory_limit="1Gi")}, r"resources.memory_limit \(1Gi\)"),
        ({"resources": Resources(cpu_request="1", memory_request="128Mi")}, r"resources memory \(128Mi\) must be at least 256Mi"),
        ({"max_connections": 10}, r"max_connections \(10\) must be >= 25"),
        ({"pod_network_cidrs": ["10.0.0.0/33"]}, r"pod_network_cidrs has an invalid network \('10.0.0.0/33'\)"),
        ({"pod_network_cidrs": ["10.1.2.3/8"]}, r"\('10.1.2.3/8'\): 10.1.2.3/8 has host bits set"),
        ({"pod_network_cidrs": ["10.1.2.3"]}, r"\('10.1.2.3'\): use CIDR notation"),
        ({"pod_network_cidrs": ["::/0"]}, r"\('::/0'\), which admits replication from every address"),
        ({"pod_network_cidrs": ["10.0.0.0/8", "10.0.0.0/8"]}, r"lists a network twice"),
        ({"pod_network_cidrs": "10.0.0.0/8"}, r"must be a non-empty list of CIDRs"),
        ({"patroni_timing": pc.PatroniTiming(ttl=20, loop_wait=10, retry_timeout=6)},
         r"patroni_timing: loop_wait \(10\) \+ 2 \* retry_timeout \(6\) = 22 must be <= ttl \(20\)"),
        ({"namespace": "Bad_NS"}, r"namespace \('Bad_NS'\)"),
        ({"tls_secret_name": "Not A Secret"}, r"tls_secret_name \('Not A Secret'\)"),
    ],
)
def test_bad_args_are_rejected_before_any_child_exists(overrides: dict[str, Any], message: str) -> None:
    values: dict[str, Any] = {"namespace": NS, **overrides}
    with pytest.raises(ValueError, match=message):
        TimescaleDB("tsdb", TimescaleDBArgs(**values))


@pytest.mark.parametrize("name", ["Tsdb", "a" * 41, "1db", "db_1"])
def test_bad_component_names_are_rejected(name: str) -> None:
    with pytest.raises(ValueError, match=r"name \("):
        TimescaleDB(name, TimescaleDBArgs(namespace=NS))


def test_required_anti_affinity_with_one_replica_is_allowed() -> None:
    assert run(anti_affinity="required", replicas=1).one(STS)


def test_two_instances_do_not_collide() -> None:
    def program() -> None:
        TimescaleDB("alpha", TimescaleDBArgs(namespace=NS))
        TimescaleDB("beta", TimescaleDBArgs(namespace=NS))

    recording = run_program(program)
    keys = [(r.type, r.name) for r in recording.resources]
    assert len(keys) == 48 and len(keys) == len(set(keys))  # 24 objects per one-member cluster
    services = [r.manifest()["metadata"]["name"] for r in recording.of_type(SVC)]
    assert len(services) == len(set(services)) == 12
    assert {f"{n}{k}" for n in ("alpha", "beta") for k in ("", "-config", "-sync", "-failover")} <= set(services)
    labels = [r.manifest()["spec"]["template"]["metadata"]["labels"] for r in recording.of_type(STS)]
    assert labels[0]["cluster-name"] != labels[1]["cluster-name"]
