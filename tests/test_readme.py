"""The README is true: its component example runs as written, and the files, outputs, config keys and
kubectl commands it names match the code."""

from __future__ import annotations

import re

from tests.harness import run_program
from tests.stacks import ROOT


def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"## Using the components in your own program.*?```python\n(.*?)```", text, re.S)
    assert match, "README lost its component example"
    return match.group(1)


def as_repository_imports(example: str) -> str:
    """The example imports the installed package (``timescale_k8s``): here it is the checkout's ``components``
    (tests/packaging/test_wheel.py runs it as written against the installed wheel)."""
    return example.replace("timescale_k8s", "components")


def test_readme_component_example_registers_a_database() -> None:
    recording = run_program(lambda: exec(as_repository_imports(readme_example()), {}), stack="readme", config={})
    statefulset = recording.one("kubernetes:apps/v1:StatefulSet").manifest()
    assert statefulset["spec"]["replicas"] == 3
    assert recording.one("timescale-k8s:index:TimescaleDB", "orders-db").protect is False
    assert "primaryHost" in recording.outputs


# -- claims checked against the code -------------------------------------------------------------

README = (ROOT / "README.md").read_text()
CODE_SPANS = re.findall(r"`([^`\n]+)`", README)
FENCED_LINES = [line for block in re.findall(r"```\w*\n(.*?)```", README, re.S) for line in block.splitlines()]
REPOSITORY_PATH = re.compile(r"^(?:tests|components|stack|bench|scripts|workloads|examples|provider|\.ci)/[\w./-]*\w$")
STRING_MAPS = {"monitorLabels", "parameters"}
"""Config keys whose children are names chosen by the user (labels, PostgreSQL parameters), not config keys."""


def section(heading: str) -> str:
    start = README.index(f"\n## {heading}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end if end != -1 else None]


def test_every_file_the_readme_names_exists() -> None:
    named = {span.split("::")[0].split(":")[0] for span in CODE_SPANS} | set(re.findall(r"\]\(([\w./-]+)\)", README))
    paths = sorted(p for p in named if REPOSITORY_PATH.match(p) or re.fullmatch(r"Pulumi\.\w+\.yaml|__main__\.py", p))
    assert len(paths) > 20, paths  # the check must see the README's paths at all
    assert [p for p in paths if not (ROOT / p).exists()] == []


def test_the_outputs_table_lists_exactly_what_the_stacks_export() -> None:
    from tests.stacks import STACKS, run_stack

    documented = {name for row in section("Stack outputs").splitlines() if row.startswith("| `")
                  for name in re.findall(r"`(\w+)`", row.split("|")[1])}
    exported = {name for stack in STACKS for name in run_stack(stack).outputs}
    assert documented == exported


def test_every_kubectl_command_names_its_context_and_namespace() -> None:
    commands = [c for c in [*CODE_SPANS, *FENCED_LINES] if c.lstrip().startswith("kubectl ")]
    assert len(commands) >= 8, commands
    assert [c for c in commands if "--context " not in c or not re.search(r"\s-n\s", c)] == []


def config_reference_keys() -> list[tuple[str, str]]:
    """(section, key) of every row of the configuration reference's tables."""
    rows, current = [], None
    for line in section("Configuration reference").splitlines():
        if line.startswith("### "):
            match = re.fullmatch(r"### `(\w+)`", line)
            current = match.group(1) if match else None
        elif current is not None and line.startswith("| `"):
            rows += [(current, key.removesuffix(".*")) for key in re.findall(r"`([^`]+)`", line.split("|")[1])]
    return rows


def test_every_documented_config_key_is_read_by_the_stack_parser() -> None:
    parser = "".join(p.read_text() for p in (ROOT / "stack").glob("*.py"))
    keys = config_reference_keys()
    assert len(keys) > 40, keys
    assert [(s, k) for s, k in keys if f'"{k.split(".")[-1]}"' not in parser] == []


def test_every_key_of_the_stack_files_is_documented() -> None:
    import yaml

    names = {part for span in re.findall(r"`([^`]+)`", section("Configuration reference"))
             for part in re.split(r"[.:=\s]", span)}

    def keys(value: object, parent: str) -> list[str]:
        if not isinstance(value, dict) or parent in STRING_MAPS:
            return []
        return [k for key, item in value.items() for k in [key.split(":")[-1], *keys(item, key.split(":")[-1])]]

    for path in sorted(ROOT.glob("Pulumi.*.yaml")):
        found = keys(yaml.safe_load(path.read_text())["config"], "")
        assert found and [k for k in found if k not in names] == [], path.name
