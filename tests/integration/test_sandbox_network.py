"""Pod addresses in the sandbox: real (non-loopback) pod IPs that Services and the API server's
proxy accept, each pod in a network namespace of its own inside the sandbox's."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes.client import ApiException

from conformance import sandbox as sbx
from conformance.cluster import Cluster, ObjectRef
from conformance.probes import PROBE_IMAGE
from conformance.sandbox import netns
from tests.integration.conftest import admin_of
from tests.integration.test_metrics_checks import NO_EXPORTER
from tests.integration.test_sandbox import scratch_namespace

pytestmark = pytest.mark.sandbox
Obj = dict[str, Any]

SERVE = (
    "import http.server, os\n"
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = os.environ['HOSTNAME'].encode()\n"
    "        self.send_response(200); self.end_headers(); self.wfile.write(body)\n"
    "http.server.HTTPServer((os.environ['KAIC_POD_IP'], 8080), H).serve_forever()\n"
)


@pytest.fixture
def ns(admin: Cluster) -> Iterator[str]:
    yield from scratch_namespace(admin)


def serving_pod(namespace: str, name: str, script: str = SERVE) -> Obj:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "echo"}},
        "spec": {"containers": [{"name": "probe", "image": PROBE_IMAGE,
                                 "command": ["python", "-c", script],
                                 "ports": [{"containerPort": 8080}]}]},
    }  # fmt: skip


@pytest.mark.skipif(netns.available() is not None, reason=f"no netns: {netns.available()}")
def test_pods_get_real_addresses_in_the_sandbox_namespace(
    sandbox: sbx.Sandbox, admin: Cluster, ns: str
) -> None:
    assert sandbox.netns
    assert sandbox.pod_cidr == netns.POD_CIDR
    admin.apply(serving_pod(ns, "echo-0"))
    admin.apply({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": ns},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })  # fmt: skip
    pod = admin.wait_for(
        "v1", "Pod", lambda ps: ps[0] if ps and ps[0]["status"].get("podIP") else None,
        awaiting="a pod IP", timeout_s=60, namespace=ns, name="echo-0",
    )  # fmt: skip
    ip = ipaddress.ip_address(pod["status"]["podIP"])
    assert ip in ipaddress.ip_network(netns.POD_CIDR)
    assert not ip.is_loopback
    # The endpointslice controller accepts the address (it refuses loopback ones).
    endpoints = admin.wait_for(
        "discovery.k8s.io/v1", "EndpointSlice",
        lambda slices: [a for s in slices for e in s.get("endpoints") or []
                        for a in e["addresses"]] or None,
        awaiting="an EndpointSlice for Service echo", timeout_s=60, namespace=ns,
        label_selector="kubernetes.io/service-name=echo",
    )  # fmt: skip
    assert endpoints == [str(ip)]
    # The API server reaches the probe process at its pod IP (pod and service proxy). The
    # process may still be starting: the proxy answers 503 until it listens.
    for path in (f"/api/v1/namespaces/{ns}/pods/echo-0:8080/proxy/",
                 f"/api/v1/namespaces/{ns}/services/echo:80/proxy/"):  # fmt: skip
        assert _get_eventually(admin, path) == "echo-0"


@pytest.mark.skipif(netns.available() is not None, reason=f"no netns: {netns.available()}")
def test_each_pod_has_its_own_ports(sandbox: sbx.Sandbox, admin: Cluster, ns: str) -> None:
    """Two pods listening on the same port of every address (as Envoy does) both serve: each
    pod has a network namespace of its own, as on a node."""
    every_address = SERVE.replace("(os.environ['KAIC_POD_IP'], 8080)", "('0.0.0.0', 8080)")
    assert every_address != SERVE
    for name in ("any-0", "any-1"):
        admin.apply(serving_pod(ns, name, every_address))
    for name in ("any-0", "any-1"):
        path = f"/api/v1/namespaces/{ns}/pods/{name}:8080/proxy/"
        assert _get_eventually(admin, path) == name


FETCH = (
    "import json, sys, time, urllib.request\n"
    "deadline, last = time.monotonic() + 20, ''\n"
    "while time.monotonic() < deadline:\n"
    "    try:\n"
    "        body = urllib.request.urlopen(sys.argv[1], timeout=3).read().decode()\n"
    "        print(json.dumps({'body': body}))\n"
    "        sys.exit(0)\n"
    "    except OSError as exc:\n"
    "        last = str(exc)\n"
    "        time.sleep(0.5)\n"
    "print(json.dumps({'error': last}))\n"
)


def fetch_in_cluster(cluster: Cluster, namespace: str, url: str) -> Obj:
    """GET `url` from a probe pod (retrying for 20 s); what it printed."""
    cluster.apply({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fetch", "namespace": namespace},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "probe", "image": PROBE_IMAGE,
                                 "command": ["python", "-c", FETCH, url]}]},
    })  # fmt: skip
    cluster.wait_for(
        "v1", "Pod", lambda ps: (ps and ps[0]["status"].get("phase") == "Succeeded") or None,
        awaiting="the fetch pod to finish", timeout_s=90, namespace=namespace, name="fetch",
    )  # fmt: skip
    result: Obj = json.loads(cluster.pod_logs("fetch", namespace).strip().splitlines()[-1])
    return result


# kube-proxy (and so cluster DNS, whose address is a ClusterIP) runs with nft, in the sandbox's
# own network namespace
NEEDS_KUBE_PROXY = pytest.mark.skipif(
    shutil.which("nft") is None or netns.available() is not None,
    reason="kube-proxy needs nft and the sandbox's own network namespace",
)


def remove_fetch(cluster: Cluster, namespace: str) -> None:
    cluster.delete(ObjectRef("v1", "Pod", "fetch", namespace), background=False)
    cluster.wait_for("v1", "Pod", lambda ps: not ps or None, awaiting="no fetch pod",
                     timeout_s=60, namespace=namespace, name="fetch")  # fmt: skip


def echo_service(cluster: Cluster, namespace: str) -> str:
    """A serving pod behind a Service; the Service's ClusterIP."""
    cluster.apply(serving_pod(namespace, "echo-0"))
    service = cluster.apply({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": namespace},
        "spec": {"selector": {"app": "echo"}, "ports": [{"port": 80, "targetPort": 8080}]},
    })  # fmt: skip
    return str(service["spec"]["clusterIP"])


@NEEDS_KUBE_PROXY
def test_cluster_ips_route_through_kube_proxy(
    sandbox: sbx.Sandbox, admin: Cluster, ns: str
) -> None:
    assert "kube-proxy" in sandbox.pids
    cluster_ip = echo_service(admin, ns)
    assert ipaddress.ip_address(cluster_ip) in ipaddress.ip_network(netns.SERVICE_CIDR)
    assert fetch_in_cluster(admin, ns, f"http://{cluster_ip}:80/") == {"body": "echo-0"}


@NEEDS_KUBE_PROXY
def test_service_names_resolve_through_cluster_dns(
    sandbox: sbx.Sandbox, admin: Cluster, ns: str
) -> None:
    """CoreDNS answers for Services; pods' resolv.conf names it, with the namespace's search
    path (a bare Service name resolves in the pod's own namespace)."""
    echo_service(admin, ns)
    for url in (f"http://echo.{ns}.svc.cluster.local/", "http://echo/"):
        remove_fetch(admin, ns)
        assert fetch_in_cluster(admin, ns, url) == {"body": "echo-0"}, url


@pytest.mark.skipif(netns.available() is not None, reason=f"no netns: {netns.available()}")
@pytest.mark.box(**NO_EXPORTER)
def test_without_kube_proxy_cluster_ips_do_not_route(box: sbx.Sandbox) -> None:
    assert "kube-proxy" not in box.pids
    cluster = admin_of(box)
    for namespace in scratch_namespace(cluster):
        cluster_ip = echo_service(cluster, namespace)
        result = fetch_in_cluster(cluster, namespace, f"http://{cluster_ip}:80/")
        assert "Connection refused" in result.get("error", ""), result
        remove_fetch(cluster, namespace)
        # no cluster DNS either (its address would not route): the name does not resolve
        result = fetch_in_cluster(cluster, namespace, f"http://echo.{namespace}.svc.cluster.local/")
        assert "error" in result, result
        assert "echo-0" not in str(result)


def _get_eventually(cluster: Cluster, path: str, timeout_s: float = 20) -> str:
    """GET through the API server until the process listens (nothing to watch for that)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return str(cluster.get_path(path, timeout=5))
        except ApiException as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"GET {path}: {exc.status} {exc.reason}") from exc
            time.sleep(0.2)


def test_host_only_sees_the_api_server(sandbox: sbx.Sandbox) -> None:
    """Nothing but the API server (through the forwarder) is reachable from the host."""
    if sandbox.netns is None:
        pytest.skip("loopback sandbox: components listen on the host's loopback")
    assert "api-forwarder" in sandbox.pids
    for name in ("etcd", "kube-apiserver", "kwok", "probe-runtime"):
        assert os.readlink(f"/proc/{sandbox.pids[name]}/ns/net") == os.readlink(sandbox.netns)
    assert os.readlink(f"/proc/{sandbox.pids['api-forwarder']}/ns/net") == os.readlink(
        "/proc/self/ns/net"
    )
