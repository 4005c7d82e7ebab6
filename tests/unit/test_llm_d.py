"""llm-d's deployment for the disaggregation check: the counters it reads, in the text format
llm-d's simulator and scheduler write, and the images `--pd-images` names."""

from __future__ import annotations

from conformance.checks import _llm_d as llm_d
from conformance.settings import PdImages, pd_images

# As llm-d-inference-sim v0.10.2 and the scheduler v0.7.1 write them (trimmed).
PREFILL = """\
# HELP vllm:request_success_total Count of successfully processed requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{finish_reason="remote_decode",model_name="kaic-pd-model"} 3
vllm:request_success_total{finish_reason="stop",model_name="kaic-pd-model"} 2
"""
SCHEDULER = """\
# HELP llm_d_inference_scheduler_disagg_decision_total Disaggregation decisions.
# TYPE llm_d_inference_scheduler_disagg_decision_total counter
llm_d_inference_scheduler_disagg_decision_total{decision_type="decode-only",model_name="m"} 4
llm_d_inference_scheduler_disagg_decision_total{decision_type="prefill-decode",model_name="m"} 1
"""


def test_counters_are_summed_by_their_labels() -> None:
    assert llm_d.total(PREFILL, llm_d.SUCCESS) == 5
    assert llm_d.total(PREFILL, llm_d.SUCCESS, finish_reason=llm_d.REMOTE_DECODE) == 3
    assert llm_d.total(SCHEDULER, llm_d.DECISIONS, decision_type="prefill-decode") == 1
    assert llm_d.total(SCHEDULER, llm_d.DECISIONS, decision_type="decode-only") == 4
    assert llm_d.total(SCHEDULER, llm_d.DECISIONS, decision_type="encode-decode") == 0


def test_counts_since_an_earlier_reading() -> None:
    before = llm_d.Counts(1, 4, 3, 5, 7)
    after = llm_d.Counts(2, 4, 4, 6, 8)
    assert after.since(before) == {"prefill_decode": 1, "decode_only": 0, "prefills": 1,
                                   "prefill_requests": 1, "decodes": 1}  # fmt: skip


def test_decode_pods_put_the_sidecar_in_front_of_the_model_server() -> None:
    decode = llm_d.pod_manifest("decode", PdImages())
    sidecar, server = decode["spec"]["containers"]
    assert sidecar["image"] == PdImages.sidecar
    assert f"--port={llm_d.SERVE_PORT}" in sidecar["args"]
    assert f"--vllm-port={llm_d.DECODE_SERVER_PORT}" in sidecar["args"]
    assert f"--port={llm_d.DECODE_SERVER_PORT}" in server["args"]
    prefill = llm_d.pod_manifest("prefill", PdImages())
    assert [c["image"] for c in prefill["spec"]["containers"]] == [PdImages.server]
    assert prefill["metadata"]["labels"][llm_d.ROLE_LABEL] == "prefill"


def test_pd_images_override_only_the_roles_given() -> None:
    images = pd_images("server=mirror.local/sim:1")
    assert images == PdImages(server="mirror.local/sim:1")
    assert pd_images(images.flag()) == images
