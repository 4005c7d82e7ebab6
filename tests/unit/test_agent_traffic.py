"""The agent's traffic client against real agent model servers on loopback: what it counts."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from conformance.agent import serve, traffic


def start(model: str, pod: str) -> tuple[str, serve.ThreadingHTTPServer]:
    httpd = serve.make_server(serve.State(model=model, pod=pod, namespace="ns", role=""),
                              "127.0.0.1", 0)  # fmt: skip
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{httpd.server_port}/v1/completions", httpd


@pytest.fixture
def alpha() -> Iterator[str]:
    url, httpd = start("kaic-alpha", "alpha-0")
    yield url
    httpd.shutdown()
    httpd.server_close()


def test_counts_by_pod_and_model(alpha: str) -> None:
    report = traffic.run(traffic.Plan(alpha, 6, ["kaic-alpha"]))
    assert report["sent"] == 6
    assert report["ok"] == 6
    assert report["status"] == {"200": 6}
    assert report["pods"] == {"alpha-0": 6}
    assert report["pods_by_model"] == {"kaic-alpha": {"alpha-0": 6}}
    assert report["errors"] == {}
    assert "failed_requests" not in report


def test_models_take_turns_and_misrouted_ones_count_as_errors(alpha: str) -> None:
    report = traffic.run(traffic.Plan(alpha, 4, ["kaic-alpha", "kaic-beta"], "X-Model"))
    # the server serves only kaic-alpha: the other model's requests are answered 404
    assert report["status"] == {"200": 2, "404": 2}
    assert report["pods_by_model"] == {"kaic-alpha": {"alpha-0": 2}}
    assert report["errors"] == {"HTTP 404": 2}
    assert report["failed_requests"]["count"] == 2
    assert (report["failed_requests"]["first"], report["failed_requests"]["last"]) == (1, 3)


def test_request_ids_and_model_header_reach_the_server(alpha: str) -> None:
    plan = traffic.Plan(alpha, 1, ["kaic-alpha"], "X-Model", {"X-Extra": "1"}, "shared ")
    assert traffic.body_for(plan, 3)["prompt"] == "shared question 3"
    reply = traffic.send(plan, 0, "run-1")
    assert (reply.status, reply.pod, reply.model) == (200, "alpha-0", "kaic-alpha")


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_url_is_reported_not_raised() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1/completions"
    report = traffic.run(traffic.Plan(url, 2, ["m"], warmup_s=0.3))
    assert report["ok"] == 0
    assert report["status"] == {"0": 2}
    assert "Connection" in next(iter(report["errors"]))
    assert report["warmup_s"] >= 0.3
    assert "Connection" in report["warmup_error"]


def test_warmup_ends_at_the_first_success(alpha: str) -> None:
    report = traffic.run(traffic.Plan(alpha, 1, ["kaic-alpha"], warmup_s=30))
    assert report["warmup_s"] < 5
    assert "warmup_error" not in report


def test_warmup_until_an_answer_accepts_an_error_status(alpha: str) -> None:
    """Where errors are what is expected (a pool with a bad picker), any HTTP answer ends the
    wait; waiting for a success would spend the whole warm-up."""
    wrong_model = traffic.Plan(alpha, 2, ["kaic-beta"], warmup_s=3, warmup_until="answer")
    report = traffic.run(wrong_model)
    assert report["warmup_s"] < 1
    assert report["status"] == {"404": 2}
    success = traffic.run(traffic.Plan(alpha, 1, ["kaic-beta"], warmup_s=1))
    assert success["warmup_s"] >= 1
    assert success["warmup_error"] == "HTTP 404"


def test_the_failure_window_says_which_requests_failed_and_when() -> None:
    replies = [
        traffic.Reply(200, "p", "m", at_s=0.0),
        traffic.Reply(0, "", "m", "refused", 1.0),
        traffic.Reply(200, "p", "m", at_s=2.0),
        traffic.Reply(503, "", "m", "HTTP", 3.5),
    ]
    assert traffic.failure_window(replies) == {
        "failed_requests": {"count": 2, "first": 1, "last": 3, "from_s": 1.0, "to_s": 3.5}
    }
