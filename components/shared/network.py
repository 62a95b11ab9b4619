"""NetworkPolicy pieces shared by components: who may scrape metrics, where DNS is, TCP port lists."""

from __future__ import annotations

import pulumi_kubernetes as k8s


def scraper_peer(monitoring_namespace: str | None) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Every pod of the monitoring namespace, or (None) every pod of the policy's own namespace."""
    if monitoring_namespace is None:
        return k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": monitoring_namespace})
    )


def tcp_ports(*numbers: int) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    """TCP ports of an ingress rule."""
    return [k8s.networking.v1.NetworkPolicyPortArgs(port=n, protocol="TCP") for n in numbers]


DNS_NAMESPACE = "kube-system"
"""Where CoreDNS/kube-dns runs (a NodeLocal DNS cache on a link-local address needs a rule of its own)."""


def dns_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """Egress to the cluster DNS: port 53, UDP and TCP, in ``kube-system``."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[k8s.networking.v1.NetworkPolicyPeerArgs(
            namespace_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"kubernetes.io/metadata.name": DNS_NAMESPACE})
        )],
        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=53, protocol=protocol) for protocol in ("UDP", "TCP")],
    )
