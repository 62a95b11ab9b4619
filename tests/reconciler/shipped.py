"""Programs shipped in ConfigMaps, materialized as the kubelet mounts them, to run outside the repository."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def materialize(volume: Mapping[str, Any], data: Mapping[str, str], root: Path) -> Path:
    """Write a ``configMap`` volume's items (key -> path) below ``root``; returns ``root``."""
    for item in volume["configMap"]["items"]:
        target = root / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(data[item["key"]])
    assert not (root / "components" / "__init__.py").exists(), "namespace packages: the repo's __init__ pulls in Pulumi"
    return root
