"""NetworkPolicy of the tsflow pods: ingress only to the metrics port from the scraping namespace, egress
only to the database pods' PostgreSQL port (in the database's namespace) and to DNS.

Egress is by pod, not by Service: a Service's virtual IP is translated to pod IPs before policies apply,
so "the database Services" are their pods (``DatabaseConnection.server_pod_labels``). DNS is admitted on
port 53 to ``kube-system`` (CoreDNS/kube-dns; a NodeLocal DNS cache listening on a link-local address
needs an extra rule of your own). Kubelet probes are not subject to NetworkPolicy.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from ..shared.network import dns_egress, namespace_peer, scraper_peer, tcp_ports
from ..shared.types import DatabaseConnection



def app_network_policy(
    name: str,
    *,
    metadata: k8s.meta.v1.ObjectMetaArgs,
    pod_selector: Mapping[str, str],
    database: DatabaseConnection,
    metrics_port: int | None,
    metrics_namespace: str | None,
    opts: pulumi.ResourceOptions,
) -> k8s.networking.v1.NetworkPolicy:
    """Deny by default, then admit scrapes of ``metrics_port`` (none when None) from ``metrics_namespace``
    (None: the pods' own namespace), and let the pods reach only PostgreSQL and DNS."""
    ingress: list[k8s.networking.v1.NetworkPolicyIngressRuleArgs] = []
    if metrics_port is not None:
        scrapers = scraper_peer(metrics_namespace)
        ingress.append(k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=[scrapers], ports=tcp_ports(metrics_port)))
    database_pods = k8s.networking.v1.NetworkPolicyPeerArgs(
        pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(database.server_pod_labels)),
        # Only the server's own namespace (a peer without one is the policy's namespace), never every namespace.
        namespace_selector=namespace_peer(database.server_namespace) if database.server_namespace is not None else None,
    )
    egress = [
        k8s.networking.v1.NetworkPolicyEgressRuleArgs(
            to=[database_pods], ports=tcp_ports(database.server_port or database.port)
        ),
        dns_egress(),
    ]
    return k8s.networking.v1.NetworkPolicy(
        name,
        metadata=metadata,
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(pod_selector)),
            policy_types=["Ingress", "Egress"],
            ingress=ingress or None,  # the server drops an empty list (a diff on every apply); none is deny-all
            egress=egress,
        ),
        opts=opts,
    )
