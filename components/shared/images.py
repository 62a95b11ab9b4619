"""Checks on container image references."""

from __future__ import annotations

import re

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_TAG = re.compile(r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")


def check_pinned_image(image: str, *, field: str) -> str:
    """Return ``image`` if it is pinned by a tag other than ``latest`` or by a sha256 digest, else raise."""
    if not isinstance(image, str) or not image or any(ch.isspace() for ch in image):
        raise ValueError(f"{field} ({image!r}) must be an image reference like 'repo/name:1.2.3'")
    if _DIGEST.search(image):
        return image
    last_segment = image.rsplit("/", 1)[-1]
    match = _TAG.search(last_segment)
    if match is None:
        raise ValueError(f"{field} ({image!r}) is not pinned; add a version tag or an @sha256 digest")
    if match.group("tag") == "latest":
        raise ValueError(f"{field} ({image!r}) uses the moving tag 'latest'; pin a version tag or an @sha256 digest")
    return image
