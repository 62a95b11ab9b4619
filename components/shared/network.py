"""NetworkPolicy pieces shared by components: ingress-only policies, who may scrape metrics, where DNS is,
TCP port lists."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_kubernetes as k8s


NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
"""The label the API server puts on every namespace, holding its name."""


def namespace_peer(namespace: pulumi.Input[str]) -> k8s.meta.v1.LabelSelectorArgs:
    """A namespace selector matching exactly one namespace, by name."""
    return k8s.meta.v1.LabelSelectorArgs(match_labels={NAMESPACE_NAME_LABEL: namespace})


def scraper_peer(monitoring_namespace: str | None) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Every pod of the monitoring namespace, or (None) every pod of the policy's own namespace."""
    if monitoring_namespace is None:
        return k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=k8s.meta.v1.LabelSelectorArgs())
    return k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=namespace_peer(monitoring_namespace))


def tcp_ports(*numbers: int) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    """TCP ports of an ingress rule."""
    return [k8s.networking.v1.NetworkPolicyPortArgs(port=n, protocol="TCP") for n in numbers]


DNS_NAMESPACE = "kube-system"
"""Where CoreDNS/kube-dns runs (a NodeLocal DNS cache on a link-local address needs a rule of its own)."""


def dns_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    """Egress to the cluster DNS: port 53, UDP and TCP, in ``kube-system``."""
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[k8s.networking.v1.NetworkPolicyPeerArgs(namespace_selector=namespace_peer(DNS_NAMESPACE))],
        ports=[k8s.networking.v1.NetworkPolicyPortArgs(port=53, protocol=protocol) for protocol in ("UDP", "TCP")],
    )


def ingress_policy(
    name: str,
    *,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    pod_labels: Mapping[str, str],
    rules: Sequence[tuple[Sequence[k8s.networking.v1.NetworkPolicyPeerArgs], Sequence[int]]],
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.NetworkPolicy:
    """An Ingress-only policy for the pods with ``pod_labels``: each rule admits its peers to its TCP ports."""
    return k8s.networking.v1.NetworkPolicy(
        name,
        metadata=metadata,
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(pod_labels)),
            policy_types=["Ingress"],
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=list(peers), ports=tcp_ports(*ports))
                for peers, ports in rules
            ],
        ),
        opts=opts,
    )
