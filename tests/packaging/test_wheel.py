"""The built wheel, installed into a fresh virtualenv, gives ``timescale_k8s`` with every component (and no
generic top-level package), and the examples/ program renders under mocks there.

The fresh virtualenv takes the runtime dependencies from the shared one through a ``.pth`` file (offline,
and the same versions the suite uses); the package itself comes only from the wheel, and the program runs
with the example directory as its working directory and no PYTHONPATH, so a file missing from the wheel
fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path
from typing import Any

import pytest

import components
from tests.test_readme import readme_example

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "orders-db"
BUILD_INPUTS = ("pyproject.toml", "requirements.txt", "README.md", "components")
"""What the build reads; it runs on a copy of just these, so a build that needs anything else fails."""
COMPONENTS = {
    "timescale_k8s.timescaledb": "TimescaleDB", "timescale_k8s.autoscaler": "Autoscaler",
    "timescale_k8s.monitoring": "Monitoring", "timescale_k8s.workload": "Workload",
    "timescale_k8s.workload.migration": "MigrationJob", "timescale_k8s.pooler": "Pooler",
    "timescale_k8s.reconciler": "Reconciler", "timescale_k8s.namespace": "StackNamespace",
    "timescale_k8s.provider": "provider_components",
}
BUILD_TIMEOUT = 300
"""Seconds for pip to build the wheel (about 4 s here; pip may fetch setuptools into its build environment)."""
RUN_TIMEOUT = 240
"""Seconds for an import check or the mocked render (about 10 s here on a busy machine)."""

pytestmark = pytest.mark.slow


def run(command: list[str], *, cwd: Path, timeout: int, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise AssertionError(f"{command} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in BUILD_INPUTS:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name)  # type: ignore[operator]
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)], cwd=source,
        timeout=BUILD_TIMEOUT)
    (built,) = out.glob("timescale_k8s-*.whl")
    return built


@pytest.fixture(scope="module")
def fresh_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                       cwd=env_dir, timeout=RUN_TIMEOUT).strip())
    (purelib / "shared-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        cwd=env_dir, timeout=BUILD_TIMEOUT)
    return python


def clean_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}


def test_the_version_is_one(wheel: Path) -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert pyproject["project"]["version"] == components.__version__
    assert wheel.name.startswith(f"timescale_k8s-{components.__version__}-")


def test_the_wheel_has_every_package_file_under_the_unique_name_only(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names}
    assert top_level == {"timescale_k8s", f"timescale_k8s-{components.__version__}.dist-info"}, top_level
    shipped = {name.removeprefix("timescale_k8s/") for name in names if name.startswith("timescale_k8s/")}
    package_dir = REPO / "components"
    expected = {p.relative_to(package_dir).as_posix() for p in package_dir.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}
    assert expected - shipped == set(), f"files missing from the wheel: {sorted(expected - shipped)}"


def test_a_fresh_environment_imports_every_component_and_no_generic_name(fresh_python: Path, tmp_path: Path) -> None:
    checks = "; ".join(f"from {module} import {name}" for module, name in COMPONENTS.items())
    probe = (
        f"{checks}; import importlib.util, json, timescale_k8s; "
        "print(json.dumps({'file': timescale_k8s.__file__, "
        "'generic': [n for n in ('components', 'stack') if importlib.util.find_spec(n)]}))"
    )
    found = json.loads(run([str(fresh_python), "-c", probe], cwd=tmp_path, timeout=RUN_TIMEOUT, env=clean_env()))
    assert found["generic"] == [], f"generic top-level packages importable: {found['generic']}"
    assert Path(found["file"]).is_relative_to(fresh_python.parent.parent), found["file"]


def test_the_example_renders_from_the_installed_package(fresh_python: Path) -> None:
    output = run([str(fresh_python), str(Path(__file__).with_name("render_example.py")), str(REPO / "tests" / "harness.py"),
                  str(EXAMPLE)], cwd=EXAMPLE, timeout=RUN_TIMEOUT, env=clean_env())
    rendered: dict[str, Any] = json.loads(output.splitlines()[-1])
    assert Path(rendered["package_file"]).is_relative_to(fresh_python.parent.parent)
    types = [r["type"] for r in rendered["resources"]]
    for token in ("timescale-k8s:index:TimescaleDB", "timescale-k8s:index:Pooler", "timescale-k8s:index:Monitoring",
                  "timescale-k8s:index:Reconciler", "kubernetes:apps/v1:StatefulSet", "kubernetes:apps/v1:Deployment",
                  "kubernetes:monitoring.coreos.com/v1:PodMonitor"):
        assert token in types, f"{token} not rendered; got {sorted(set(types))}"
    program = next(r for r in rendered["resources"] if r["type"] == "kubernetes:core/v1:ConfigMap"
                   and "tsreconcile" in json.dumps(r["inputs"].get("data", {})))
    shipped = set(program["inputs"]["data"])
    assert "components.reconciler.tsreconcile.run.py" in shipped and "components.shared.scram.py" in shipped, shipped
    assert rendered["outputs"]["writeHost"].endswith(".orders.svc.cluster.local"), rendered["outputs"]


def test_the_readme_example_runs_as_written_on_the_installed_package(fresh_python: Path, tmp_path: Path) -> None:
    program = tmp_path / "readme-example"
    program.mkdir()
    (program / "__main__.py").write_text(readme_example())
    output = run([str(fresh_python), str(Path(__file__).with_name("render_example.py")), str(REPO / "tests" / "harness.py"),
                  str(program)], cwd=program, timeout=RUN_TIMEOUT, env=clean_env())
    rendered: dict[str, Any] = json.loads(output.splitlines()[-1])
    statefulsets = [r for r in rendered["resources"] if r["type"] == "kubernetes:apps/v1:StatefulSet"]
    assert [s["inputs"]["spec"]["replicas"] for s in statefulsets] == [3], statefulsets
    assert "primaryHost" in rendered["outputs"]
