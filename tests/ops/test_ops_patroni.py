"""python -m ops against a real Patroni cluster: two members from the prod stack's rendered settings (tests/ha).

``kubectl exec`` is stood in for by :class:`tests.ha.in_pod.InPod`: the inner command runs on the member with only
what a shell in the pod has.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from components.timescaledb import pod
from ops import commands
from ops.cli import Ops
from ops.target import Target
from tests.ha.cluster import PatroniCluster, missing_requirements, rendered_database, wait_until
from tests.ha.in_pod import InPod

pytestmark = [
    pytest.mark.ha,
    pytest.mark.skipif(missing_requirements() is not None, reason=str(missing_requirements())),
]


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
