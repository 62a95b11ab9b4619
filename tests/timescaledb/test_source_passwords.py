"""A standby cluster authenticates with its source's role passwords: the dr stack takes prod's ``rolePasswords``.

A standby's data is a physical copy of its source's, roles and passwords included: with passwords of its own, its
replicas could not authenticate to the standby leader and clients could not log in after a promotion.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from components.pooler import auth as pooler_auth
from components.timescaledb import TimescaleDB
from components.timescaledb import patroni_config as pc
from components.timescaledb import pod
from components.timescaledb.checks import Problems, check_args
from components.shared.types import ConnectionSecretKeys
from stack import ROLE_PASSWORDS_OUTPUT
from stack.config import parse_stack_config
from stack.reader import ConfigError
from tests.harness import Recording, run_program
from tests.stacks import run_main, run_stack, stack_file_config

SECRET = "kubernetes:core/v1:Secret"
PASSWORD = "random:index/randomPassword:RandomPassword"
DATABASE = "timescale-k8s:timescaledb"
BACKUP = "timescale-k8s:backup"


def secret_data(recording: Recording, name_contains: str) -> dict[str, Any]:
    return recording.one(SECRET, name_contains).manifest()["stringData"]


def raw_config(stack: str) -> dict[str, Any]:
    return {key.removeprefix("timescale-k8s:"): value for key, value in stack_file_config(stack).items()}


def test_prod_exports_every_database_roles_password_as_a_secret() -> None:
    prod = run_stack("prod")
    passwords = prod.outputs[ROLE_PASSWORDS_OUTPUT]
    assert ROLE_PASSWORDS_OUTPUT in prod.secret_outputs
    assert set(passwords) == {pc.SUPERUSER, pc.REPLICATION_USER, pc.REWIND_USER, pc.MONITOR_USER, "app", "reader",
                              pooler_auth.LOOKUP_ROLE}
    assert set(passwords.values()) <= set(prod.mock_passwords())
    assert secret_data(prod, "-app")[ConnectionSecretKeys.PASSWORD] == passwords["app"]


def test_dr_authenticates_with_prods_passwords_and_generates_only_its_rest_api_password() -> None:
    prod, dr = run_stack("prod"), run_stack("dr")
    source = prod.outputs[ROLE_PASSWORDS_OUTPUT]
    internal = secret_data(dr, "-internal")
    assert internal[pod.REPLICATION_KEY] == source[pc.REPLICATION_USER]
    assert internal[pod.REWIND_KEY] == source[pc.REWIND_USER]
    assert internal[pod.MONITOR_KEY] == source[pc.MONITOR_USER]
    assert secret_data(dr, "-superuser")[ConnectionSecretKeys.PASSWORD] == source[pc.SUPERUSER]
    assert secret_data(dr, "-app")[ConnectionSecretKeys.PASSWORD] == source["app"]
    assert secret_data(dr, "-reader")[ConnectionSecretKeys.PASSWORD] == source["reader"]
    # Its REST API password is its own (not in the data); it generates no database role's password.
    assert [r.name for r in dr.of_type(PASSWORD) if r.name.startswith("timescaledb-")] == ["timescaledb-restapi-password"]
    assert internal[pod.RESTAPI_KEY] in dr.mock_passwords()
    # It passes them on, so the rebuilt old prod of a failback (its standby) finds its own passwords there.
    assert dr.outputs[ROLE_PASSWORDS_OUTPUT] == {role: source[role] for role in dr.outputs[ROLE_PASSWORDS_OUTPUT]}
    assert ROLE_PASSWORDS_OUTPUT in dr.secret_outputs


def test_a_failback_standby_keeps_its_own_generated_passwords() -> None:
    """The old prod rebuilt as a standby of dr: dr holds prod's passwords, so prod keeps its RandomPasswords (removing
    them would delete protected resources and change every Secret)."""
    config = stack_file_config("prod")
    backup = {**config[BACKUP], "standby": {"fromStanza": "timescaledb", "fromPath": "/dr", "sourceUsesOurPasswords": True}}
    failback = run_main("prod", {**config, BACKUP: backup})
    prod = run_stack("prod")
    assert sorted(r.name for r in failback.of_type(PASSWORD)) == sorted(r.name for r in prod.of_type(PASSWORD))
    assert failback.outputs[ROLE_PASSWORDS_OUTPUT] == prod.outputs[ROLE_PASSWORDS_OUTPUT]


def test_a_promoted_dr_keeps_prods_passwords() -> None:
    """After the promotion the runbook removes ``standby`` and keeps ``passwordsFromStack``: the data still holds
    prod's roles, so the Secrets must not change."""
    config = stack_file_config("dr")
    backup = {key: value for key, value in config[BACKUP].items() if key != "standby"}
    promoted = run_main("dr", {**config, BACKUP: backup})
    assert promoted.outputs[ROLE_PASSWORDS_OUTPUT] == run_stack("dr").outputs[ROLE_PASSWORDS_OUTPUT]
    assert secret_data(promoted, "-app") == secret_data(run_stack("dr"), "-app")


def test_a_standby_without_its_sources_passwords_is_refused_in_config_spelling() -> None:
    raw = raw_config("dr")
    del raw["timescaledb"]["passwordsFromStack"]
    with pytest.raises(ConfigError) as refused:
        parse_stack_config(raw)
    message = str(refused.value)
    assert "timescale-k8s:timescaledb.passwordsFromStack: required with backup.standby" in message
    assert "backup.standby.sourceUsesOurPasswords" in message


@pytest.mark.parametrize(("change", "expected"), [
    (lambda raw: raw["backup"]["standby"].update(sourceUsesOurPasswords=True), "choose one"),
    (lambda raw: raw["timescaledb"].update(passwordsFromStack="acme/timescale k8s/prod"), "must be a stack name"),
    (lambda raw: raw["timescaledb"].update(passwordsFromStack="a/b/c/d"), "must be a stack name"),
])
def test_contradicting_or_malformed_password_sources_are_refused(change: Any, expected: str) -> None:
    raw = raw_config("dr")
    change(raw)
    with pytest.raises(ConfigError, match=expected):
        parse_stack_config(raw)


def dr_args(**changes: Any) -> Any:
    return dataclasses.replace(parse_stack_config(raw_config("dr")).database.args, **changes)


def test_the_component_refuses_a_standby_without_source_passwords() -> None:
    with pytest.raises(Problems, match="source_passwords: required with backup.standby"):
        check_args("timescaledb", dr_args())


def test_a_source_without_one_of_this_clusters_roles_fails_naming_it() -> None:
    """The source has no reader role (another ``reader_user``): nothing to log in as, so the update fails."""
    source = {role: f"pw-{role}" for role in (pc.SUPERUSER, pc.REPLICATION_USER, pc.REWIND_USER, pc.MONITOR_USER, "app")}
    with pytest.raises(Exception, match="no password for role 'reader'"):
        run_program(lambda: TimescaleDB("timescaledb", dr_args(source_passwords=source)), stack="dr")


def test_given_passwords_land_in_the_secrets_as_given() -> None:
    source = {role: f"given-{role}" for role in (pc.SUPERUSER, pc.REPLICATION_USER, pc.REWIND_USER, pc.MONITOR_USER,
                                                 "app", "reader")}
    recording = run_program(lambda: TimescaleDB("timescaledb", dr_args(source_passwords=source)), stack="dr")
    assert secret_data(recording, "-internal")[pod.REPLICATION_KEY] == "given-standby"
    assert secret_data(recording, "-app")[ConnectionSecretKeys.URI].startswith("postgresql://app:given-app@")
    assert "stringData" in recording.one(SECRET, "-app").secret_paths
