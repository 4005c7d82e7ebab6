"""Disaggregated inference: the platform installs and runs a disaggregated serving solution
(llm-d) behind its gateway, and requests really take the split path. The check deploys llm-d's
prefill and decode pods and its inference scheduler as an InferencePool's endpoint picker
(`_llm_d.py`), then sends a short prompt and a long uncached one through the Gateway under test.
The short one must be decode-only; the long one must pass through the prefill pod and then the
decode pod: the scheduler's decision counter, both model servers' request counters and the
request id in both pods' logs say so. Not applicable where the cluster serves no InferencePool
API, the interface through which llm-d (like the Inference Extension's pickers) routes."""

from __future__ import annotations

import uuid

from conformance.checks import _gateway as gw
from conformance.checks import _llm_d as llm_d
from conformance.checks import _pools as pools
from conformance.checks.registry import check
from conformance.cluster.wait import WaitTimeout, poll_until
from conformance.evidence import Evidence
from conformance.failures import fail, not_applicable
from conformance.fixtures import Kube
from conformance.settings import Settings

COUNTS_SETTLE_S = 15
NEXT_STEP = (
    "kubectl -n {ns} logs {scheduler} (the scheduler's decision), kubectl -n {ns} logs "
    "{decode} -c routing-sidecar; check that the gateway applies the header mutations of the "
    "InferencePool's endpoint picker (x-prefiller-host-port) and lets pods reach each other"
)


@check("disaggregated-inference.prefill-decode", requirements=["disaggregated_inference"])
def test_prefill_decode(kube: Kube, kaic_settings: Settings, evidence: Evidence) -> None:
    """llm-d behind the platform's gateway: a long uncached prompt is prefilled on the prefill
    pod and decoded on the decode pod; a short one is served by the decode pod alone."""
    if not kube.cluster.serves(pools.POOL_API, "InferencePool"):
        not_applicable(
            "no-disaggregated-serving",
            f"the cluster serves no {pools.POOL_API} InferencePool (Gateway API Inference "
            "Extension), through which llm-d routes prefill/decode disaggregated serving",
        )
    pools.require_pool_api(kube)
    gateway = gw.gateway_under_test(kube, kaic_settings, evidence)
    deployment = llm_d.deploy(kube, kaic_settings.pd_images, gateway)
    evidence.observe("deployment", {"prefill": deployment.prefill, "decode": deployment.decode,
                                    "scheduler": deployment.scheduler,
                                    "images": vars(kaic_settings.pd_images)})  # fmt: skip
    pools.wait_accepted(kube, llm_d.POOL, gateway)
    short_id = _send(kube, deployment, kaic_settings, "short", prompt_prefix="")
    long_id = _send(kube, deployment, kaic_settings, "long", prompt_prefix=_long_prompt())
    logged = _logged(kube, deployment, {"short": short_id, "long": long_id})
    evidence.observe("request_ids_logged", logged)
    if not logged["long"]["prefill"] or not logged["long"]["decode"]:
        fail(expected=f"request {long_id} (long prompt) in the logs of {deployment.prefill} and "
             f"of {deployment.decode}'s model server", observed=f"logged: {logged['long']}",
             next_step=_next_step(kube, deployment))  # fmt: skip
    if logged["short"]["prefill"]:
        fail(expected=f"request {short_id} (short prompt) never to reach {deployment.prefill}",
             observed="the prefill pod logged it",
             next_step=_next_step(kube, deployment))  # fmt: skip


def _send(
    kube: Kube, deployment: llm_d.Deployment, settings: Settings, kind: str, prompt_prefix: str
) -> str:  # fmt: skip
    """One request through the gateway; fails unless the counters show the path wanted for
    `kind`; returns its request id."""
    before = llm_d.counts(kube, deployment)
    report = gw.traffic(kube, deployment.gateway, f"pd-{kind}", count=1, models=[llm_d.MODEL],
                        model_header=settings.model_header, prompt_prefix=prompt_prefix,
                        warmup_s=gw.WARMUP_S if kind == "short" else 0)  # fmt: skip
    gw.require_all_ok(report, deployment.gateway, f"llm-d's {kind}-prompt path")
    # The short prompt's warm-up requests count too: each is decode-only.
    wanted = ({"prefill_decode": 1, "prefills": 1, "decodes": 1} if kind == "long"
              else {"decode_only": 1, "decodes": 1})  # fmt: skip

    last: dict[str, float] = {}

    def settled() -> tuple[dict[str, float] | None, str]:
        last.update(llm_d.counts(kube, deployment).since(before))
        return (dict(last) if all(last[k] >= n for k, n in wanted.items()) else None), str(last)

    path = ("the scheduler to decide prefill-decode, the prefill pod to run a prefill for a "
            "remote decode and the decode pod to finish the request" if kind == "long"
            else "the scheduler to decide decode-only and the decode pod to serve it")  # fmt: skip
    try:
        delta = poll_until(settled, awaiting=f"the counters of the {kind}-prompt request",
                           timeout_s=COUNTS_SETTLE_S)  # fmt: skip
    except WaitTimeout as exc:
        fail(expected=f"{path} (counter increases at least {wanted})",
             observed=f"{_diagnosis(last)}; {exc}",
             next_step=_next_step(kube, deployment))  # fmt: skip
    kube.evidence.observe(f"{kind}_prompt_counts", delta)
    if kind == "short" and (delta["prefill_requests"] or delta["prefill_decode"]):
        fail(expected="a short prompt (fewer uncached tokens than "
             f"{llm_d.NON_CACHED_TOKENS}) to stay decode-only",
             observed=f"counter increases {delta}",
             next_step=_next_step(kube, deployment))  # fmt: skip
    # The id the model servers saw: the gateway may have replaced the client's.
    return str((report.get("request_ids") or [""])[0]) or f"{report['run']}-0"


def _diagnosis(delta: dict[str, float]) -> str:
    if not delta["prefill_decode"] and not delta["decode_only"]:
        return (
            "llm-d's scheduler made no decision for it: the gateway did not ask the "
            "InferencePool's endpoint picker"
        )
    if not delta["prefill_decode"]:
        return "llm-d's scheduler decided decode-only"
    if not delta["prefills"]:
        return (
            "llm-d's scheduler chose a prefill pod, but the prefill pod ran no prefill: the "
            "request reached the decode pod without the prefill pod's address "
            "(x-prefiller-host-port), or its sidecar could not reach the prefill pod"
        )
    return "the decode pod's model server finished no request"


def _long_prompt() -> str:
    """A prompt no pod has seen (a fresh id first: the prefix cache matches from the start),
    many times longer than the decider's threshold of uncached tokens."""
    words = " ".join(f"passage {i} of a long document to summarise," for i in range(40))
    return f"{uuid.uuid4().hex} {words} "


def _logged(
    kube: Kube, deployment: llm_d.Deployment, ids: dict[str, str]
) -> dict[str, dict[str, bool]]:
    logs = {
        "prefill": kube.cluster.pod_logs(deployment.prefill, kube.namespace),
        "decode": kube.cluster.pod_logs(deployment.decode, kube.namespace, container="vllm"),
    }
    return {kind: {role: request_id in text for role, text in logs.items()}
            for kind, request_id in ids.items()}  # fmt: skip


def _next_step(kube: Kube, deployment: llm_d.Deployment) -> str:
    return NEXT_STEP.format(ns=kube.namespace, scheduler=deployment.scheduler,
                            decode=deployment.decode)  # fmt: skip
