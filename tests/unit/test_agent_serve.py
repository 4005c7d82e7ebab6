"""The agent's model server, spoken to over HTTP the way gateways, Prometheus and HPAs do."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conformance.agent import serve


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("POD_NAME", "serve-0")
    monkeypatch.setenv("POD_NAMESPACE", "kaic-test")
    state = serve.state_from_env("m1", "decode")
    httpd = serve.make_server(state, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def samples(base: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = requests.get(f"{base}/metrics", timeout=5).text
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(found: dict[str, list[tuple[dict[str, str], float]]], name: str) -> float:
    return sum(v for _, v in found[name])


def test_completions_name_the_pod_and_count(server: str) -> None:
    reply = requests.post(f"{server}/v1/completions", json={"model": "m1", "prompt": "hi"},
                          timeout=5)  # fmt: skip
    assert reply.status_code == 200
    assert reply.headers["x-inference-pod"] == "serve-0"
    assert reply.headers["x-inference-namespace"] == "kaic-test"
    assert reply.headers["x-inference-role"] == "decode"
    body = reply.json()
    assert body["choices"][0]["text"] == "served by serve-0"
    assert body["served_by"] == {"pod": "serve-0", "namespace": "kaic-test", "role": "decode"}
    chat = requests.post(f"{server}/v1/chat/completions", timeout=5, json={
        "model": "m1", "messages": [{"role": "user", "content": "hello"}]}).json()  # fmt: skip
    assert chat["choices"][0]["message"]["content"] == "served by serve-0"
    found = samples(server)
    assert value(found, "vllm:request_success_total") == 2
    assert value(found, "vllm:e2e_request_latency_seconds_count") == 2
    buckets = {labels["le"]: v for labels, v in found["vllm:e2e_request_latency_seconds_bucket"]}
    assert buckets["+Inf"] == 2
    assert all(labels.get("model_name") == "m1" for labels, _ in found["vllm:num_requests_waiting"])


def test_a_request_id_is_kept(server: str) -> None:
    reply = requests.post(f"{server}/v1/completions", json={"prompt": "x"}, timeout=5,
                          headers={"x-request-id": "req-42"})  # fmt: skip
    assert reply.headers["x-request-id"] == "req-42"
    assert reply.json()["id"] == "req-42"


def test_streaming_is_server_sent_events(server: str) -> None:
    reply = requests.post(f"{server}/v1/chat/completions", stream=True, timeout=5, json={
        "model": "m1", "stream": True, "messages": [{"role": "user", "content": "x"}]})  # fmt: skip
    assert reply.headers["Content-Type"] == "text/event-stream"
    events = [line[len("data: "):] for line in reply.iter_lines(decode_unicode=True)
              if line.startswith("data: ")]  # fmt: skip
    assert events[-1] == "[DONE]"
    chunks: list[dict[str, Any]] = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    assert text == "served by serve-0"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert value(samples(server), "vllm:request_success_total") == 1


def test_control_steers_the_reported_load(server: str) -> None:
    reply = requests.post(f"{server}/control", json={"queue_depth": 7, "kv_cache_usage": 0.9},
                          timeout=5)  # fmt: skip
    assert reply.json()["queue_depth"] == 7
    found = samples(server)
    assert value(found, "vllm:num_requests_waiting") == 7
    assert value(found, "vllm:kv_cache_usage_perc") == pytest.approx(0.9)
    assert value(found, "vllm:gpu_cache_usage_perc") == pytest.approx(0.9)


def test_a_shared_prefix_hits_the_cache(server: str) -> None:
    prefix = "system: you are a careful assistant who answers in one line. " * 2

    def ask(suffix: str) -> str:
        reply = requests.post(f"{server}/v1/completions", json={"prompt": prefix + suffix},
                              timeout=5)  # fmt: skip
        return reply.headers["x-prefix-cache"]

    assert [ask("a"), ask("b"), ask("c")] == ["miss", "hit", "hit"]
    found = samples(server)
    assert value(found, "vllm:prefix_cache_queries_total") == 3
    assert value(found, "vllm:prefix_cache_hits_total") == 2


def test_another_model_or_a_bad_body_is_refused(server: str) -> None:
    other = requests.post(f"{server}/v1/completions", json={"model": "m2"}, timeout=5)
    assert other.status_code == 404
    assert "m2" in other.json()["error"]["message"]
    bad = requests.post(f"{server}/v1/completions", data=b"[1]", timeout=5)
    assert bad.status_code == 400
    assert requests.get(f"{server}/v1/models", timeout=5).json()["data"][0]["id"] == "m1"
    assert value(samples(server), "vllm:request_success_total") == 0


def test_a_chunked_body_is_read_and_the_connection_stays_usable(server: str) -> None:
    """As Envoy forwards a body an ext_proc (the endpoint picker) has read: chunked, on a pooled
    connection. Bytes left unread would be parsed as the next request."""
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        for model in ("m1", "m2"):
            chunks = iter([json.dumps({"model": model, "prompt": "hi"}).encode()[i:i + 7]
                           for i in range(0, 40, 7)])  # fmt: skip
            conn.request("POST", "/v1/completions", body=chunks, encode_chunked=True,
                         headers={"Transfer-Encoding": "chunked"})  # fmt: skip
            reply = conn.getresponse()
            reply.read()
            assert reply.status == (200 if model == "m1" else 404)  # the body's model was read
    finally:
        conn.close()
    assert value(samples(server), "vllm:request_success_total") == 1
