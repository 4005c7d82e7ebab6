"""`serve`: a model server for probes, standard library only.

It answers the OpenAI-style API (`/v1/models`, `/v1/completions`, `/v1/chat/completions`, with
`"stream": true` as server-sent events) with a canned completion, names the pod that served each
response (headers `x-inference-pod`, `x-inference-namespace`, `x-inference-role`, and the body's
`served_by`), and exposes vLLM's metric names at `/metrics`, so that whatever scrapes, routes or
autoscales on vLLM can be shown to work on it. What it reports can be steered per pod through
`POST /control` (JSON: `queue_depth`, `kv_cache_usage`, `latency_ms`), so that load-aware routing
and autoscaling decisions can be observed. Prompts sharing their first `PREFIX_CHARS` characters
hit its prefix cache (`x-prefix-cache: hit|miss`, `vllm:prefix_cache_hits_total`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Obj = dict[str, Any]
PREFIX_CHARS = 64
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class State:
    """What the server reports; mutated by requests and by /control, read by /metrics."""

    model: str
    pod: str
    namespace: str
    role: str
    queue_depth: int = 0
    kv_cache_usage: float = 0.0
    latency_ms: float = 0.0
    running: int = 0
    success: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    prefix_queries: int = 0
    prefix_hits: int = 0
    latency_sum: float = 0.0
    latency_counts: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS))
    prefixes: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def observe(self, seconds: float, prompt: str, completion: str) -> None:
        with self.lock:
            self.success += 1
            self.prompt_tokens += len(prompt.split())
            self.generation_tokens += len(completion.split())
            self.latency_sum += seconds
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self.latency_counts[i] += 1

    def prefix_hit(self, prompt: str) -> bool:
        if len(prompt) < PREFIX_CHARS:
            return False
        key = hashlib.sha256(prompt[:PREFIX_CHARS].encode()).hexdigest()
        with self.lock:
            self.prefix_queries += 1
            hit = key in self.prefixes
            self.prefixes.add(key)
            if hit:
                self.prefix_hits += 1
        return hit

    def control(self, body: Obj) -> Obj:
        with self.lock:
            if "queue_depth" in body:
                self.queue_depth = max(0, int(body["queue_depth"]))
            if "kv_cache_usage" in body:
                self.kv_cache_usage = min(1.0, max(0.0, float(body["kv_cache_usage"])))
            if "latency_ms" in body:
                self.latency_ms = max(0.0, float(body["latency_ms"]))
            return {"queue_depth": self.queue_depth, "kv_cache_usage": self.kv_cache_usage,
                    "latency_ms": self.latency_ms}  # fmt: skip

    def metrics(self) -> str:
        label = f'model_name="{self.model}"'
        with self.lock:
            lines = [
                "# HELP vllm:num_requests_running Requests being processed.",
                "# TYPE vllm:num_requests_running gauge",
                f"vllm:num_requests_running{{{label}}} {self.running}",
                "# HELP vllm:num_requests_waiting Requests waiting to be processed.",
                "# TYPE vllm:num_requests_waiting gauge",
                f"vllm:num_requests_waiting{{{label}}} {self.queue_depth}",
                "# HELP vllm:kv_cache_usage_perc KV-cache usage (1 = full).",
                "# TYPE vllm:kv_cache_usage_perc gauge",
                f"vllm:kv_cache_usage_perc{{{label}}} {self.kv_cache_usage}",
                "# HELP vllm:gpu_cache_usage_perc KV-cache usage (name before vLLM 0.10).",
                "# TYPE vllm:gpu_cache_usage_perc gauge",
                f"vllm:gpu_cache_usage_perc{{{label}}} {self.kv_cache_usage}",
                "# HELP vllm:lora_requests_info Running and waiting LoRA adapters.",
                "# TYPE vllm:lora_requests_info gauge",
                f'vllm:lora_requests_info{{max_lora="0",running_lora_adapters="",'
                f'waiting_lora_adapters=""}} {time.time():.3f}',
                "# HELP vllm:request_success_total Finished requests.",
                "# TYPE vllm:request_success_total counter",
                f'vllm:request_success_total{{{label},finished_reason="stop"}} {self.success}',
                "# HELP vllm:prompt_tokens_total Prompt tokens processed.",
                "# TYPE vllm:prompt_tokens_total counter",
                f"vllm:prompt_tokens_total{{{label}}} {self.prompt_tokens}",
                "# HELP vllm:generation_tokens_total Tokens generated.",
                "# TYPE vllm:generation_tokens_total counter",
                f"vllm:generation_tokens_total{{{label}}} {self.generation_tokens}",
                "# HELP vllm:prefix_cache_queries_total Prompts looked up in the prefix cache.",
                "# TYPE vllm:prefix_cache_queries_total counter",
                f"vllm:prefix_cache_queries_total{{{label}}} {self.prefix_queries}",
                "# HELP vllm:prefix_cache_hits_total Prefix cache hits.",
                "# TYPE vllm:prefix_cache_hits_total counter",
                f"vllm:prefix_cache_hits_total{{{label}}} {self.prefix_hits}",
                "# HELP vllm:e2e_request_latency_seconds End-to-end request latency.",
                "# TYPE vllm:e2e_request_latency_seconds histogram",
            ]
            for bound, count in zip(LATENCY_BUCKETS, self.latency_counts, strict=True):
                lines.append(
                    f'vllm:e2e_request_latency_seconds_bucket{{{label},le="{bound}"}} {count}'
                )
            lines += [
                f'vllm:e2e_request_latency_seconds_bucket{{{label},le="+Inf"}} {self.success}',
                f"vllm:e2e_request_latency_seconds_sum{{{label}}} {self.latency_sum:.6f}",
                f"vllm:e2e_request_latency_seconds_count{{{label}}} {self.success}",
            ]
        return "\n".join(lines) + "\n"


def prompt_of(path: str, body: Obj) -> str:
    if path.endswith("/chat/completions"):
        return "\n".join(str(m.get("content", "")) for m in body.get("messages") or [])
    prompt = body.get("prompt", "")
    return " ".join(map(str, prompt)) if isinstance(prompt, list) else str(prompt)


def completion_text(state: State) -> str:
    return f"served by {state.pod or 'kaic-agent'}"


def response_body(state: State, path: str, model: str, text: str, request_id: str) -> Obj:
    chat = path.endswith("/chat/completions")
    choice: Obj = {"index": 0, "finish_reason": "stop"}
    if chat:
        choice["message"] = {"role": "assistant", "content": text}
    else:
        choice["text"] = text
    return {
        "id": request_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": {"completion_tokens": len(text.split())},
        "served_by": {"pod": state.pod, "namespace": state.namespace, "role": state.role},
    }


def stream_chunks(state: State, path: str, model: str, text: str, request_id: str) -> Iterator[Obj]:
    chat = path.endswith("/chat/completions")
    words = text.split()
    for i, word in enumerate(words):
        piece = word if i == 0 else f" {word}"
        delta: Obj = {"delta": {"content": piece}} if chat else {"text": piece}
        last = i == len(words) - 1
        yield {
            "id": request_id,
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": "stop" if last else None, **delta}],
            "served_by": {"pod": state.pod, "namespace": state.namespace, "role": state.role},
        }


def read_chunked(stream: io.BufferedIOBase) -> bytes:
    """A request body in HTTP/1.1 chunked encoding. Left unread, its bytes would be taken for
    the next request on the connection, which a gateway's pooled connection then sends."""
    body = bytearray()
    while True:
        size_line = stream.readline(1024)
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise ValueError(f"bad chunk size line {size_line[:40]!r}") from None
        if size == 0:
            while stream.readline(1024) not in (b"\r\n", b"\n", b""):
                pass  # trailers
            return bytes(body)
        body += stream.read(size)
        stream.readline(1024)  # the CRLF after the chunk


def handler_for(state: State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # one line per request would drown the probe's log

        def _send(
            self, code: int, body: bytes, content_type: str, extra: Obj | None = None
        ) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in self._identity(extra).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _identity(self, extra: Obj | None = None) -> dict[str, str]:
            headers = {"x-inference-pod": state.pod, "x-inference-namespace": state.namespace,
                       "x-inference-role": state.role}  # fmt: skip
            return {k: str(v) for k, v in (headers | (extra or {})).items() if v}

        def _json(self, code: int, body: Obj, extra: Obj | None = None) -> None:
            self._send(code, json.dumps(body).encode(), "application/json", extra)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, state.metrics().encode(), "text/plain; version=0.0.4")
            elif path in ("/health", "/healthz", "/ready"):
                self._json(200, {"status": "ok"})
            elif path == "/v1/models":
                self._json(200, {"object": "list", "data": [
                    {"id": state.model, "object": "model", "owned_by": "kaic"}]})  # fmt: skip
            else:
                self._json(404, {"error": {"message": f"no route {path}"}})

        def _body(self) -> Obj:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raw = read_chunked(self.rfile)  # as Envoy forwards a body an ext_proc has read
            else:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b"{}"
            value = json.loads(raw or b"{}")
            if not isinstance(value, dict):
                raise ValueError("the body must be a JSON object")
            return value

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                body = self._body()
            except ValueError as exc:
                self._json(400, {"error": {"message": f"bad request body: {exc}"}})
                return
            if path == "/control":
                self._json(200, state.control(body))
            elif path in ("/v1/completions", "/v1/chat/completions"):
                self._complete(path, body)
            else:
                self._json(404, {"error": {"message": f"no route {path}"}})

        def _complete(self, path: str, body: Obj) -> None:
            model = str(body.get("model") or state.model)
            if model != state.model:
                self._json(404, {"error": {"message": f"model {model!r} is not served here",
                                           "type": "NotFoundError"}})  # fmt: skip
                return
            started = time.monotonic()
            with state.lock:
                state.running += 1
            try:
                prompt = prompt_of(path, body)
                hit = state.prefix_hit(prompt)
                request_id = self.headers.get("x-request-id") or f"cmpl-{uuid.uuid4().hex}"
                extra = {"x-request-id": request_id, "x-prefix-cache": "hit" if hit else "miss"}
                if state.latency_ms:
                    time.sleep(state.latency_ms / 1000)
                text = completion_text(state)
                if body.get("stream"):
                    self._stream(path, model, text, request_id, extra)
                else:
                    self._json(200, response_body(state, path, model, text, request_id), extra)
                state.observe(time.monotonic() - started, prompt, text)
            finally:
                with state.lock:
                    state.running -= 1

        def _stream(self, path: str, model: str, text: str, request_id: str, extra: Obj) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            for name, value in self._identity(extra).items():
                self.send_header(name, value)
            self.end_headers()
            events = [f"data: {json.dumps(c)}\n\n"
                      for c in stream_chunks(state, path, model, text, request_id)]  # fmt: skip
            for event in [*events, "data: [DONE]\n\n"]:
                data = event.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")

    return Handler


def state_from_env(model: str, role: str) -> State:
    return State(
        model=model,
        pod=os.environ.get("POD_NAME") or os.environ.get("HOSTNAME", ""),
        namespace=os.environ.get("POD_NAMESPACE", ""),
        role=role,
    )


def make_server(state: State, host: str, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer((host, port), handler_for(state))
    server.daemon_threads = True
    return server


def serve(model: str, host: str, port: int, role: str, control: Obj) -> int:
    state = state_from_env(model, role)
    state.control(control)
    server = make_server(state, host, port)
    print(json.dumps({"serving": model, "address": f"{host}:{server.server_port}", "role": role,
                      "pod": state.pod}), flush=True)  # fmt: skip
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
