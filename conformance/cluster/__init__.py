"""A thin layer over the official `kubernetes` client: connect, discover, apply, wait, clean up."""

from conformance.cluster.client import Cluster, HttpReply, ObjectRef, ProxyTarget
from conformance.cluster.connect import ConnectOptions, connect, kubeconfig_configured
from conformance.cluster.labels import MANAGED_BY, RUN_ID, kaic_labels
from conformance.cluster.wait import WaitTimeout

__all__ = [
    "MANAGED_BY",
    "RUN_ID",
    "Cluster",
    "ConnectOptions",
    "HttpReply",
    "ObjectRef",
    "ProxyTarget",
    "WaitTimeout",
    "connect",
    "kaic_labels",
    "kubeconfig_configured",
]
