"""The commands each ops verb runs: argv lists, built here and nowhere else, so tests see exactly what runs.

Inside a member (what follows ``kubectl exec ... --``):

- ``patronictl`` in the Patroni container finds its config from the pod's ``PATRONICTL_CONFIG_FILE``; the REST
  API password (a switchover is an authenticated request) is exported from its mounted file first, as
  Patroni's own start command does: ``kubectl exec`` gets the container's env, not what its command exported.
- ``pgbackrest`` in the backup agent's container reads its config from ``PGBACKREST_CONFIG``; the S3 key pair
  is exported from its mounted files first, the same way. Secrets never pass through argv.
- ``psql`` over the member's socket as the superuser (peer authentication, no password).
"""

from __future__ import annotations

import shlex

from components.timescaledb import patroni_config as pc
from components.timescaledb import pod

from .target import Target

DR_LAG_SQL = ("SELECT pg_is_in_recovery() AS in_recovery, pg_last_wal_replay_lsn() AS replayed_lsn, "
              "round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()))::bigint "
              "AS seconds_since_last_replayed_commit")
"""On a standby leader: how far behind its source it is, as replay shows it (what a promotion would lose)."""


def kubectl_exec(target: Target, member: str, container: str, inner: list[str]) -> list[str]:
    """``kubectl --context C -n N exec MEMBER -c CONTAINER -- INNER``: context and namespace always named."""
    return ["kubectl", "--context", target.context, "-n", target.namespace, "exec", member, "-c", container,
            "--", *inner]


RESTAPI_PASSWORD = next((variable, f"{pod.PATRONI_SECRETS_DIR}/{name}") for variable, name in pod.PATRONI_PASSWORDS
                        if variable == "PATRONI_RESTAPI_PASSWORD")


def with_exports(variables: list[tuple[str, str]], argv: list[str]) -> list[str]:
    """``bash -c 'export VAR="$(< file)" ...; exec ARGV'``: each variable read from its file inside the pod."""
    return ["bash", "-c", f"{pod.shell_exports(variables)}; exec {shlex.join(argv)}"]


def patronictl(*args: str) -> list[str]:
    return with_exports([RESTAPI_PASSWORD], ["patronictl", *args])


def members_json() -> list[str]:
    """Members, roles, state, timeline and lag as JSON (what ``status`` shows and the others pick from)."""
    return patronictl("list", "--extended", "--format", "json")


def switchover(leader: str, candidate: str | None) -> list[str]:
    """A planned switchover now (to ``candidate``, else Patroni's choice: the synchronous standby)."""
    return patronictl("switchover", "--force", "--leader", leader, *(["--candidate", candidate] if candidate else []))


def promote_standby_cluster() -> list[str]:
    """Turn a standby cluster into a primary cluster: drop ``standby_cluster`` from the DCS config; Patroni
    promotes the standby leader and the members follow it (the README's promotion)."""
    return patronictl("edit-config", "--force", "--set", "standby_cluster=null")


def pgbackrest(stanza: str, repositories: int, *args: str) -> list[str]:
    """``pgbackrest --stanza=S ARGS`` with every repository's S3 key pair exported from the mounted files first."""
    return with_exports(pod.backup_credentials(repositories), ["pgbackrest", f"--stanza={stanza}", *args])


def backup(stanza: str, repositories: int, kind: str) -> list[list[str]]:
    """An on-demand backup of ``kind`` (full, diff, incr) into each repository, taken on the leader as the agent
    takes its own (pgBackRest backs up into one repository per run: ``repo1`` unless ``--repo`` says otherwise)."""
    if repositories == 1:
        return [pgbackrest(stanza, repositories, f"--type={kind}", "backup")]
    return [pgbackrest(stanza, repositories, f"--type={kind}", f"--repo={repo}", "backup")
            for repo in range(1, repositories + 1)]


def backup_info(stanza: str, repositories: int) -> list[str]:
    return pgbackrest(stanza, repositories, "--output=json", "info")


def psql(sql: str) -> list[str]:
    """``psql`` as the superuser over the member's socket, one row per line, columns separated by ``|``."""
    return ["psql", "-h", pc.SOCKET_DIR, "-U", pc.SUPERUSER, "-d", "postgres", "-AtX", "-v", "ON_ERROR_STOP=1",
            "-c", sql]
