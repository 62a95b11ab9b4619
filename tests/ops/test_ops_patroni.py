"""python -m ops against a real Patroni cluster: two members from the prod stack's rendered settings (tests/ha).

``kubectl exec`` is stood in for by running the inner command on the member as the pod would: as the servers'
OS user, with the container's env only (not the passwords Patroni's start command exported), the pod's paths
mapped to the member's (socket, Patroni's secrets) and ``patronictl`` on PATH. So a command that works only
with what a shell in the pod has is what passes.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.timescaledb import patroni_config as pc
from components.timescaledb import pod
from ops import commands
from ops.cli import Ops
from ops.target import Target
from tests.ha.cluster import PatroniCluster, missing_requirements, rendered_database, wait_until
from tests.ha.machine import RUN_AS, as_user, chown, python_for

pytestmark = [
    pytest.mark.ha,
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]


class InPod:
    """Runs ``kubectl ... exec MEMBER -c timescaledb -- INNER`` on the harness member, as described above."""

    def __init__(self, cluster: PatroniCluster) -> None:
        self.cluster = cluster
        self.calls: list[list[str]] = []
        self.bin = cluster.root / "ops-bin"
        self.secrets = cluster.root / "ops-patroni-secrets"
        for directory in (self.bin, self.secrets):
            directory.mkdir()
            chown(directory)
        wrapper = self.bin / "patronictl"
        wrapper.write_text(f"#!/bin/sh\nexec {python_for(RUN_AS)} -s -c 'import sys; from patroni.ctl import ctl; "
                           "sys.argv[0] = \"patronictl\"; ctl()' \"$@\"\n")
        wrapper.chmod(0o755)
        for variable, name in pod.PATRONI_PASSWORDS:
            secret = self.secrets / name
            secret.write_text(cluster.passwords[variable] + "\n")
            chown(secret)
            secret.chmod(0o400)

    def _mapped(self, text: str, socket_dir: Path) -> str:
        return text.replace(pod.PATRONI_SECRETS_DIR, str(self.secrets)).replace(pc.SOCKET_DIR, str(socket_dir))

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        member_name, container = argv[argv.index("exec") + 1], argv[argv.index("-c") + 1]
        assert container == pod.PATRONI_CONTAINER, argv
        member = self.cluster.member(member_name)
        inner = [self._mapped(arg, member.socket_dir) for arg in argv[argv.index("--") + 1:]]
        env = {k: v for k, v in self.cluster.member_env(member).items() if k not in self.cluster.passwords}
        env["PATH"] = f"{self.bin}:{env['PATH']}"
        result = subprocess.run(inner, env=env, cwd=member.root, capture_output=True, text=True, timeout=120,
                                **as_user())
        if result.returncode != 0:
            print(f"{shlex.join(inner)} -> {result.returncode}\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture(scope="module")
def cluster() -> Iterator[PatroniCluster]:
    with PatroniCluster(rendered_database("prod"), members=2, startup_timeout=60) as running:
        yield running


@pytest.fixture(scope="module")
def in_pod(cluster: PatroniCluster) -> InPod:
    return InPod(cluster)


def _ops(cluster: PatroniCluster, runner: InPod, *, standby: bool = False) -> tuple[Ops, list[str]]:
    target = Target(stack="ha-test", context="test", namespace="test",
                    members=tuple(m.name for m in cluster.members), stanza=None, standby=standby)
    out: list[str] = []
    return Ops(target, runner=runner, out=out.append), out


def test_status_and_switchover_run_in_the_member_as_a_pod_shell_would(cluster: PatroniCluster, in_pod: InPod) -> None:
    ops, out = _ops(cluster, in_pod)
    before = cluster.wait_for_leader()
    cluster.wait_for_roles({m.name: "replica" for m in cluster.members if m is not before}, timeout=60)
    ops.status()
    assert any(line.startswith(f"{before.name}: Leader, running") for line in out), out
    assert len(out) == len(cluster.members), out
    assert ops.leader() == before.name

    # Patroni switches over to the synchronous standby only once it has named one (a replica that just started
    # streaming is not one yet: patronictl then prints "can not find sync_standby", which ops reports).
    wait_until(lambda: any(m.get("role") == "sync_standby" for m in cluster.topology().values()),
               timeout=cluster.timing().switchover_seconds(30), message="no synchronous standby named",
               logs=cluster.diagnostics)
    ops.switchover(None)  # the REST API password came from its file
    after = cluster.wait_for_leader(exclude=[before.name], timeout=cluster.timing().switchover_seconds(30))
    assert ops.leader() == after.name != before.name


def test_without_the_exported_password_patroni_refuses_the_switchover(cluster: PatroniCluster,
                                                                      in_pod: InPod) -> None:
    """Why patronictl runs behind the export: a pod shell has no PATRONI_RESTAPI_PASSWORD of its own."""
    ops, _ = _ops(cluster, in_pod)
    leader = ops.leader()
    bare = commands.kubectl_exec(ops.target, leader, pod.PATRONI_CONTAINER,
                                 ["patronictl", "switchover", "--force", "--leader", leader])
    result = in_pod(bare)
    assert result.returncode != 0
    assert cluster.wait_for_leader().name == leader


def test_dr_lag_and_the_promotion_command_run_on_the_leader(cluster: PatroniCluster, in_pod: InPod) -> None:
    ops, out = _ops(cluster, in_pod, standby=True)
    ops.dr_lag()
    in_recovery, replayed, _seconds = out[-1].split("|")
    # A primary: not in recovery; a replay position only if it was a replica before the switchover.
    assert in_recovery == "f" and re.fullmatch(r"([0-9A-F]+/[0-9A-F]+)?", replayed), out
    ops.promote(source_is_down=True)  # on a primary cluster: removes a standby_cluster section it does not have
    assert "standby_cluster" not in cluster.dcs_settings()
    assert in_pod.calls[-1][-1].endswith("exec patronictl edit-config --force --set standby_cluster=null")
