"""``kubectl exec MEMBER -c timescaledb -- INNER`` stood in for on a harness member (for ops' commands).

The inner command runs on the member as the pod would: as the servers' OS user, with the container's env only (not
the passwords Patroni's start command exported), the pod's paths mapped to the member's (socket, Patroni's secrets)
and ``patronictl`` on PATH. So a command that works only with what a shell in the pod has is what passes.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from components.timescaledb import patroni_config as pc
from components.timescaledb import pod
from tests.ha.cluster import PatroniCluster
from tests.ha.machine import RUN_AS, as_user, chown, python_for


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
