"""Render a Pulumi program under mocks and print what it registered as JSON (run by the wheel test in a fresh
virtualenv, so nothing of this repository but the shared harness file is importable).

Usage: python render_example.py <harness.py> <program directory>
"""

import importlib.util
import json
import runpy
import sys
from pathlib import Path


def load_harness(path: Path):  # type: ignore[no-untyped-def]
    """The repository's mocks harness, loaded by path (``tests`` is not importable here)."""
    spec = importlib.util.spec_from_file_location("harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["harness"] = module
    spec.loader.exec_module(module)
    return module


def main() -> None:
    harness, program = load_harness(Path(sys.argv[1])), Path(sys.argv[2])
    recording = harness.run_program(lambda: runpy.run_path(str(program / "__main__.py"), run_name="__main__"),
                                    project=program.name, stack="dev")
    import timescale_k8s

    print(json.dumps({
        "package_file": timescale_k8s.__file__,
        "resources": [{"type": r.type, "name": r.name, "inputs": r.inputs} for r in recording.resources],
        "outputs": recording.outputs,
    }, default=str))


if __name__ == "__main__":
    main()
