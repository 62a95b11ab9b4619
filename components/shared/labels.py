"""Kubernetes recommended labels, computed in one place for every component."""

from __future__ import annotations

PART_OF = "timescale-k8s"
MANAGED_BY = "pulumi"

NAME_LABEL = "app.kubernetes.io/name"
INSTANCE_LABEL = "app.kubernetes.io/instance"
COMPONENT_LABEL = "app.kubernetes.io/component"
PART_OF_LABEL = "app.kubernetes.io/part-of"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
VERSION_LABEL = "app.kubernetes.io/version"


def selector_labels(*, app: str, instance: str, component: str) -> dict[str, str]:
    """The immutable subset of the recommended labels that selectors use."""
    return {NAME_LABEL: app, INSTANCE_LABEL: instance, COMPONENT_LABEL: component}


def recommended_labels(*, app: str, instance: str, component: str, version: str | None = None) -> dict[str, str]:
    """All recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)."""
    labels = selector_labels(app=app, instance=instance, component=component)
    labels[PART_OF_LABEL] = PART_OF
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    if version:
        labels[VERSION_LABEL] = _label_value(version)
    return labels


def _label_value(text: str) -> str:
    """Make a string a valid label value (63 chars, alphanumerics and -_. inside)."""
    cleaned = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in text)[:63]
    return cleaned.strip("-_.") or "unknown"
