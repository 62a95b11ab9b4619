"""Kubernetes object-name patterns, one definition for every component and the stack config."""

from __future__ import annotations

import re

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
"""RFC 1123 label (namespaces, Service names): lowercase alphanumerics and '-', at most 63 characters."""

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
"""RFC 1123 subdomain (Secrets, StorageClasses, label prefixes): as a label plus '.', at most 253 characters."""
