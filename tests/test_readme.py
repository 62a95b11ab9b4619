"""The README's "Using the components in your own program" example runs as written."""

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
