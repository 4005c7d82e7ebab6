"""In-cluster pieces without a cluster: plugin definition, manifests, Sonobuoy contract, 403s."""

from __future__ import annotations

import json
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml
from kubernetes.client.exceptions import ApiException

from conformance.cli import main
from conformance.cluster.forbidden import forbidden_message
from conformance.incluster import manifests, rbac, sonobuoy
from tests.unit.test_submission import profile_run


def printed(capsys: pytest.CaptureFixture[str], argv: list[str]) -> list[dict[str, Any]]:
    assert main(argv) == 0
    return [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]


@pytest.mark.parametrize("result_format", ["junit", "manual"])
def test_plugin_definition(capsys: pytest.CaptureFixture[str], result_format: str) -> None:
    argv = ["plugin", "--profile", "batch", "--image", "reg.example/kaic:1", "--result-format"]
    (doc,) = printed(capsys, [*argv, result_format])
    config = doc["sonobuoy-config"]
    assert config["driver"] == "Job"
    assert config["plugin-name"] == "kaic"
    assert config["result-format"] == result_format
    assert config["source-url"].startswith("https://")
    assert "batch" in config["description"]
    assert config["result-files"] == [manifests.RESULT_FILES[result_format]]
    spec = doc["spec"]
    assert spec["image"] == "reg.example/kaic:1"
    assert spec["command"] == ["kaic"]
    assert spec["args"][:5] == [
        "entrypoint",
        "--profile",
        "batch",
        "--result-format",
        result_format,
    ]
    mounts = {m["name"]: m["mountPath"] for m in spec["volumeMounts"]}
    assert mounts["results"] == sonobuoy.DEFAULT_RESULTS_DIR
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["readOnlyRootFilesystem"] is True


def test_manifests_ship_the_least_privilege_role(capsys: pytest.CaptureFixture[str]) -> None:
    docs = printed(capsys, ["manifests", "--profile", "batch", "--namespace", "certify"])
    kinds = [d["kind"] for d in docs]
    assert kinds == ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Job"]
    role, binding, job = docs[2], docs[3], docs[4]
    assert role["rules"] == rbac.rules()
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in role["rules"])
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "kaic", "namespace": "certify"}
    ]
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "kaic"
    assert job["metadata"]["namespace"] == "certify"
    assert "--linger" in pod["containers"][0]["args"]
    (only,) = printed(capsys, ["manifests", "--rbac-only"])
    assert only["kind"] == "ClusterRole"
    assert only["rules"] == rbac.rules()


def test_every_role_rule_says_who_needs_it() -> None:
    resources = [(g, r) for g, rs, _v, why in rbac.RULES for r in rs if why]
    assert len(resources) == sum(len(rs) for _g, rs, _v, _w in rbac.RULES)
    assert len(set(resources)) == len(resources), "a resource is granted twice"


def test_sonobuoy_env_defaults_and_overrides(tmp_path: Path) -> None:
    env = sonobuoy.SonobuoyEnv.from_environ({})
    assert env.results_dir == Path("/tmp/sonobuoy/results")
    assert env.progress_url == "http://localhost:8099/progress"
    env = sonobuoy.SonobuoyEnv.from_environ(
        {"SONOBUOY_RESULTS_DIR": str(tmp_path), "SONOBUOY_PROGRESS_PORT": "9000"}
    )
    assert (env.results_dir, env.progress_url) == (tmp_path, "http://localhost:9000/progress")


def test_publish_writes_the_tarball_then_done(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "junit.xml").write_text("<testsuites/>")
    (reports / "results.json").write_text("{}")
    env = sonobuoy.SonobuoyEnv(tmp_path / "results", "http://localhost:1/progress")
    tarball = sonobuoy.publish(reports, env)
    assert tarball.is_absolute()
    assert (env.results_dir / "done").read_text() == str(tarball)
    with tarfile.open(tarball) as tar:
        assert sorted(tar.getnames()) == ["junit.xml", "results.json"]
    assert not list(env.results_dir.glob("*.partial"))


def test_manual_results_format() -> None:
    run = profile_run("1.35", ("passed", "failed", "skipped"))
    doc = sonobuoy.manual_results(run)
    assert doc["status"] == "failed"
    assert doc["meta"]["verdict"] == "not-conformant"
    assert len(doc["items"]) == len(run.requirements)
    allowed = {"passed", "failed", "skipped", "unknown"}
    for req, item in zip(run.requirements, doc["items"], strict=True):
        assert item["name"] == f"{req.level} {req.id}"
        assert item["status"] in allowed
        assert [c["name"] for c in item["items"]] == [f"{req.id}/{c.id}" for c in req.checks]


class _Sidecar(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append((self.path, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def sidecar() -> Iterator[tuple[str, list[tuple[str, dict[str, Any]]]]]:
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []
    handler = type("Handler", (_Sidecar,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/progress", received
    server.shutdown()
    server.server_close()


def test_progress_is_posted(sidecar: tuple[str, list[tuple[str, dict[str, Any]]]]) -> None:
    url, received = sidecar
    reporter = sonobuoy.ProgressReporter(url, total=3)
    reporter.completed = 2
    reporter.failures.append("dra.claim-allocated")
    reporter.post("kaic: dra.claim-allocated failed")
    assert received == [
        (
            "/progress",
            {
                "msg": "kaic: dra.claim-allocated failed",
                "total": 3,
                "completed": 2,
                "failures": ["dra.claim-allocated"],
            },
        )
    ]
    assert reporter.unreachable == ""


def test_progress_without_a_sidecar_is_given_up_once(tmp_path: Path) -> None:
    reporter = sonobuoy.ProgressReporter("http://127.0.0.1:9/progress", total=1)
    reporter.post("first")
    assert "127.0.0.1:9" in reporter.unreachable
    before = reporter.unreachable
    reporter.post("second")  # no second connection attempt
    assert reporter.unreachable == before


def test_entrypoint_that_cannot_start_still_publishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SONOBUOY_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("SONOBUOY_PROGRESS_PORT", "9")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    code = main(["entrypoint", "--kubeconfig", str(tmp_path / "missing")])
    assert code == 2
    done = (tmp_path / "results" / "done").read_text()
    with tarfile.open(done) as tar:
        junit = tar.extractfile("junit.xml")
        assert junit is not None
        text = junit.read().decode()
        error = tar.extractfile("error.txt")
        assert error is not None
        assert "missing" in error.read().decode()
    assert 'name="kaic/run-could-not-start"' in text
    assert "Traceback" not in capsys.readouterr().err


def api_403(message: str) -> ApiException:
    exc = ApiException(status=403, reason="Forbidden")
    exc.body = json.dumps({"kind": "Status", "message": message, "code": 403})
    return exc


def test_forbidden_message_names_verb_resource_and_namespace() -> None:
    exc = api_403(
        "resourceclaimtemplates.resource.k8s.io is forbidden: User "
        '"system:serviceaccount:kaic:kaic" cannot create resource "resourceclaimtemplates" '
        'in API group "resource.k8s.io" in the namespace "kaic-dra-1"'
    )
    assert forbidden_message(exc) == (
        "forbidden: create resourceclaimtemplates.resource.k8s.io in namespace kaic-dra-1 "
        "(as system:serviceaccount:kaic:kaic; kaic manifests --rbac-only prints the role "
        "kaic needs)"
    )
    core = api_403('nodes is forbidden: User "u" cannot list resource "nodes" in API group ""')
    message = forbidden_message(core)
    assert message is not None
    assert message.startswith("forbidden: list nodes (as u;")
    assert forbidden_message(ApiException(status=404, reason="Not Found")) is None
    odd = api_403("quota exceeded")
    assert forbidden_message(odd) == "forbidden: quota exceeded"
