"""llm-d's prefill/decode disaggregation, deployed as its own guides deploy it behind an
InferencePool of the Gateway under test: prefill pods (a model server), decode pods (the routing
sidecar in front of a model server), and llm-d's inference scheduler as the pool's endpoint
picker, configured to send a request through a prefill pod when its prompt has at least
`NON_CACHED_TOKENS` uncached tokens and to keep shorter ones decode-only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families

from conformance.checks import _gateway as gw
from conformance.checks import _monitoring as mon
from conformance.checks import _pools as pools
from conformance.cluster import ProxyTarget
from conformance.failures import fail
from conformance.fixtures import Kube
from conformance.probes import pods
from conformance.settings import PdImages

Obj = dict[str, Any]
ROLE_LABEL = "llm-d.ai/role"
POOL = "pd"
MODEL = "kaic-pd-model"
SERVE_PORT = mon.SERVE_PORT  # prefill pods' model server, decode pods' sidecar
DECODE_SERVER_PORT = 8200  # the decode pods' model server, behind the sidecar
SCHEDULER_METRICS_PORT = 9090
NON_CACHED_TOKENS = 16
DECISIONS = "llm_d_inference_scheduler_disagg_decision"
# The model server's count of finished requests; a prefill it ran for a remote decode finishes
# with this reason, a decode (local or after a remote prefill) with "stop" or "length".
SUCCESS = "vllm:request_success"
REMOTE_DECODE = "remote_decode"

# llm-d's P/D configuration (deploy/config/pd-epp-config.yaml of the scheduler).
SCHEDULER_CONFIG: Obj = {
    "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
    "kind": "EndpointPickerConfig",
    "featureGates": ["prepareDataPlugins"],
    "plugins": [
        {"type": "disagg-headers-handler"},
        {"type": "prefix-cache-scorer",
         "parameters": {"maxPrefixBlocksToMatch": 256, "lruCapacityPerServer": 31250}},
        {"type": "queue-scorer"}, {"type": "prefill-filter"}, {"type": "decode-filter"},
        {"type": "max-score-picker"},
        {"type": "prefix-based-pd-decider", "parameters": {"nonCachedTokens": NON_CACHED_TOKENS}},
        {"type": "disagg-profile-handler",
         "parameters": {"deciders": {"prefill": "prefix-based-pd-decider"}}},
    ],
    "schedulingProfiles": [
        {"name": role, "plugins": [{"pluginRef": f"{role}-filter"},
                                   {"pluginRef": "max-score-picker"},
                                   {"pluginRef": "prefix-cache-scorer", "weight": 2},
                                   {"pluginRef": "queue-scorer", "weight": 1}]}
        for role in ("prefill", "decode")
    ],
}  # fmt: skip


@dataclass(frozen=True)
class Deployment:
    prefill: str  # pod names
    decode: str
    scheduler: str  # the scheduler's pod
    gateway: gw.Gateway


def _server(port: int, image: str) -> Obj:
    return {
        "name": "vllm", "image": image,
        "args": [f"--port={port}", f"--model={MODEL}", "--force-dummy-tokenizer", "--log-http",
                 "--enable-request-id-headers"],
        "ports": [{"name": "http", "containerPort": port}],
        "readinessProbe": {"httpGet": {"path": "/health", "port": port}, "periodSeconds": 2},
        "securityContext": pods.restricted(),
    }  # fmt: skip


def _sidecar(image: str) -> Obj:
    return {
        "name": "routing-sidecar", "image": image,
        "args": [f"--port={SERVE_PORT}", f"--vllm-port={DECODE_SERVER_PORT}",
                 "--kv-connector=nixlv2", "--secure-proxy=false"],
        "env": [{"name": "OTEL_TRACES_SAMPLER_ARG", "value": "0"}],
        "ports": [{"name": "sidecar", "containerPort": SERVE_PORT}],
        "securityContext": pods.restricted(),
    }  # fmt: skip


def pod_manifest(role: str, images: PdImages) -> Obj:
    containers = (
        [_sidecar(images.sidecar), _server(DECODE_SERVER_PORT, images.server)]
        if role == "decode"
        else [_server(SERVE_PORT, images.server)]
    )
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": f"{POOL}-{role}",
                     "labels": {pools.POOL_LABEL: POOL, ROLE_LABEL: role}},
        "spec": {"containers": containers, "terminationGracePeriodSeconds": 5},
    }  # fmt: skip


def deploy(kube: Kube, images: PdImages, gateway: gw.Gateway) -> Deployment:
    """Pods, scheduler, route and pool; waits for the pods and the scheduler to be Ready."""
    names = {role: kube.apply(pod_manifest(role, images))["metadata"]["name"]
             for role in ("prefill", "decode")}  # fmt: skip
    picker = f"{POOL}-scheduler"
    config = ["--config-text", yaml.safe_dump(SCHEDULER_CONFIG)]
    for obj in pools.picker_objects(picker, POOL, images.scheduler, extra_args=config):
        kube.apply(obj)
    for name in names.values():
        mon.ready_pod(kube, name)
    scheduler = mon.ready_pod_of(kube, f"app.kubernetes.io/name={picker}",
                                 timeout_s=pools.EPP_READY_TIMEOUT_S)  # fmt: skip
    pools.route_then_pool(kube, POOL, gateway, picker)
    return Deployment(names["prefill"], names["decode"], scheduler, gateway)


def scrape(kube: Kube, pod: str, port: int, what: str) -> str:
    reply = kube.cluster.proxy("GET", ProxyTarget("pods", kube.namespace, pod, port), "/metrics")
    if reply.status != 200:
        fail(expected=f"{what} (pod {pod}) to serve its metrics on port {port}",
             observed=f"GET /metrics through the API server's proxy: HTTP {reply.status} "
             f"{reply.text[:200]}",
             next_step=f"kubectl -n {kube.namespace} describe pod {pod}; kubectl -n "
             f"{kube.namespace} logs {pod} --all-containers")  # fmt: skip
    return reply.text


def total(text: str, name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include `labels`."""
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in (name, f"{name}_total")
        and all(sample.labels.get(k) == v for k, v in labels.items())
    )


@dataclass(frozen=True)
class Counts:
    """What the scheduler decided and what the model servers ran, at one moment."""

    prefill_decode: float
    decode_only: float
    prefills: float  # prefills the prefill pod ran for a remote decode
    prefill_requests: float  # every request the prefill pod finished
    decodes: float  # requests the decode pod's model server finished

    def since(self, before: Counts) -> Obj:
        return {k: v - getattr(before, k) for k, v in vars(self).items()}


def counts(kube: Kube, deployment: Deployment) -> Counts:
    decisions = scrape(kube, deployment.scheduler, SCHEDULER_METRICS_PORT, "llm-d's scheduler")
    prefill = scrape(kube, deployment.prefill, SERVE_PORT, "the prefill model server")
    decode = scrape(kube, deployment.decode, DECODE_SERVER_PORT, "the decode model server")
    return Counts(
        prefill_decode=total(decisions, DECISIONS, decision_type="prefill-decode"),
        decode_only=total(decisions, DECISIONS, decision_type="decode-only"),
        prefills=total(prefill, SUCCESS, finish_reason=REMOTE_DECODE),
        prefill_requests=total(prefill, SUCCESS),
        decodes=total(decode, SUCCESS),
    )
