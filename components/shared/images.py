"""Image policy: every image is pinned to one build, never to a tag that upstream moves.

An image is pinned when it carries a ``@sha256:`` digest, or a tag with a full version:

* any image: a three-part version (``1.2.3``, ``v0.17.1``, ``0.1.0-rc1``); ``latest``, ``1``, ``1.2``,
  ``pg17`` and other floating tags are rejected with an error naming the key;
* the database image (``timescale/timescaledb-ha``): ``pg<major>.<minor>-ts<x>.<y>.<z>`` with an
  optional flavour suffix (``-all``, ``-oss``), because upstream moves ``pg17``, ``pg17-ts2.18`` and
  ``pg17.4-ts2.18`` as new builds appear. A digest alone is accepted too.

An image this project builds itself (``tsflow``) must carry a digest (:func:`check_digest_pinned_image`):
a tag is only a name in a registry anyone with push rights can move, and the digest is what the kubelet
then pulls (checkov CKV_K8S_43).
"""

from __future__ import annotations

import re

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")
_TAG = re.compile(r":(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})$")
_FULL_VERSION = re.compile(r"^v?\d+\.\d+\.\d+([-+._][A-Za-z0-9_.+-]*)?$")
_TIMESCALEDB_TAG = re.compile(r"^pg(?P<major>\d+)\.\d+-ts\d+\.\d+\.\d+(-[a-z0-9.]+)?$")
_TIMESCALEDB_MAJOR = re.compile(r"^pg(?P<major>\d+)")


def image_tag(image: str) -> str | None:
    """The tag of ``image`` (without any digest), or None when it has none."""
    name = _DIGEST.sub("", image).rsplit("/", 1)[-1]
    match = _TAG.search(name)
    return match.group("tag") if match else None


def image_version(image: str) -> str:
    """The image's tag, else the first 12 hex digits of its digest: the app.kubernetes.io/version label."""
    tag = image_tag(image)
    if tag is not None:
        return tag
    return image.rsplit("@sha256:", 1)[1][:12] if "@sha256:" in image else "unknown"


def _check_reference(image: str, *, field: str) -> None:
    if not isinstance(image, str) or not image or any(ch.isspace() for ch in image):
        raise ValueError(f"{field} ({image!r}) must be an image reference like 'repo/name:1.2.3'")


def check_pinned_image(image: str, *, field: str) -> str:
    """Return ``image`` if it carries a sha256 digest or a full-version tag, else raise naming ``field``."""
    _check_reference(image, field=field)
    if _DIGEST.search(image):
        return image
    tag = image_tag(image)
    if tag is None:
        raise ValueError(f"{field} ({image!r}) is not pinned; add a full version tag (1.2.3) or an @sha256 digest")
    if not _FULL_VERSION.match(tag):
        raise ValueError(
            f"{field} ({image!r}) uses the floating tag {tag!r}, which upstream moves; "
            "pin a full version tag (like 1.2.3) or an @sha256 digest"
        )
    return image


DIGEST_HOW_TO = (
    "take it from the build that pushed the image: `docker buildx build --push -t <repo>:<tag> "
    "--metadata-file build.json <dir>` writes it as containerimage.digest, and after a push or pull "
    "`docker inspect --format '{{index .RepoDigests 0}}' <repo>:<tag>` prints <repo>@sha256:<digest>"
)
"""How to find an image's digest, for errors that ask for one."""


def check_digest_pinned_image(image: str, *, field: str) -> str:
    """Return ``image`` if it ends in ``@sha256:<64 hex digits>`` (a tag before it is optional), else raise naming ``field``."""
    _check_reference(image, field=field)
    if _DIGEST.search(image):
        return image
    raise ValueError(
        f"{field} ({image!r}) must be pinned by digest: append @sha256:<64 lower-case hex digits> of your build, "
        f"keeping the tag if you like ('repo/tsflow:0.1.0@sha256:...'); {DIGEST_HOW_TO}"
    )


def check_timescaledb_image(image: str, *, field: str) -> str:
    """Return ``image`` if it is pinned as a timescaledb-ha build (full pg and ts versions) or by digest."""
    _check_reference(image, field=field)
    if _DIGEST.search(image):
        return image
    tag = image_tag(image)
    if tag is None or not _TIMESCALEDB_TAG.match(tag):
        raise ValueError(
            f"{field} ({image!r}) is not pinned to one build: use a tag with full PostgreSQL and TimescaleDB "
            "versions such as 'pg17.11-ts2.30.1' (floating tags like 'pg17' or 'pg17-ts2.18' move) "
            "or an @sha256 digest"
        )
    return image


def postgres_major_of(image: str) -> int | None:
    """The PostgreSQL major version a timescaledb-ha tag names (``pg17.4-...`` -> 17), None without a tag."""
    tag = image_tag(image)
    match = _TIMESCALEDB_MAJOR.match(tag) if tag else None
    return int(match.group("major")) if match else None
