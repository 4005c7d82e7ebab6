"""The in-cluster paths against the sandbox's real API server (which enforces RBAC).

`kaic entrypoint` runs as a process the way it runs in a pod: in-cluster credentials of a
ServiceAccount bound to exactly the ClusterRole `kaic manifests` ships, SONOBUOY_* set, and a
local HTTP server standing in for the Sonobuoy sidecar's progress endpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from conformance import sandbox as sbx
from conformance.cluster import Cluster
from conformance.cluster.client import ObjectRef
from conformance.cluster.labels import selector
from conformance.incluster import rbac
from conformance.incluster.manifests import job_manifests

pytestmark = pytest.mark.sandbox

RUN_TIMEOUT_S = 900


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    results_dir: Path
    progress: list[dict[str, Any]]

    @property
    def results(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(
            (self.results_dir / "kaic-reports/results.json").read_text()
        )
        return data


def statuses(results: dict[str, Any]) -> dict[str, str]:
    """Requirement and check statuses of a results.json, keyed by id."""
    out = {}
    for req in results["requirements"]:
        out[req["id"]] = req["status"]
        for check in req["checks"]:
            out[check["id"]] = check["status"]
    return out


class _Progress(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        type(self).received.append({"path": self.path, **body})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def progress_server() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    handler = type("Handler", (_Progress,), {"received": received})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], received
    finally:
        server.shutdown()
        server.server_close()


BindFn = Callable[[list[dict[str, Any]]], Path]


@pytest.fixture(scope="module")
def bind(admin: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BindFn]:
    """Service account credentials (token, ca.crt) bound to the given ClusterRole rules."""
    created: list[ObjectRef] = []

    def make(rules: list[dict[str, Any]]) -> Path:
        n = len(created) // 4
        namespace = f"kaic-runner-{n}"
        docs = job_manifests("cncf-ai-v1.35", namespace=namespace)[:4]  # no Job
        for doc in docs:
            if doc["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                doc["metadata"]["name"] = f"kaic-test-{n}"
        docs[2]["rules"] = rules
        docs[3]["roleRef"]["name"] = f"kaic-test-{n}"
        for doc in docs:
            admin.apply(doc)
            created.append(ObjectRef.of(doc))
        token = admin.core.create_namespaced_service_account_token(
            "kaic", namespace, {"spec": {"expirationSeconds": 3600}}
        ).status.token
        directory = tmp_path_factory.mktemp(f"serviceaccount-{n}")
        (directory / "token").write_text(token)
        (directory / "ca.crt").write_bytes(Path(admin.configuration.ssl_ca_cert).read_bytes())
        return directory

    try:
        yield make
    finally:
        for ref in reversed(created):
            admin.delete(ref)


def entrypoint(
    sandbox: sbx.Sandbox,
    account: Path,
    results_dir: Path,
    progress_port: int,
    *args: str,
) -> Run:
    """`kaic entrypoint` as a process, configured as a pod would be."""
    url = urlparse(sandbox.server)
    env = {
        **os.environ,
        "KUBERNETES_SERVICE_HOST": str(url.hostname),
        "KUBERNETES_SERVICE_PORT": str(url.port),
        "KAIC_SERVICEACCOUNT_DIR": str(account),
        "SONOBUOY_RESULTS_DIR": str(results_dir),
        "SONOBUOY_PROGRESS_PORT": str(progress_port),
        "KUBECONFIG": "/nonexistent",  # in-cluster credentials only
    }
    done = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "entrypoint", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr, results_dir, [])


# The routing checks are shown through the sandbox's gateway in test_inference_routing.py; here
# they would add minutes to every run, and fail-open fails on that gateway by design
# (docs/sandbox.md), so these runs compare everything else.
NO_GATEWAY = ("--skip", "gateway-api.*", "--skip", "inference-pool.*")


@contextmanager
def admin_run(
    sandbox: sbx.Sandbox, output: Path, profile: str
) -> Iterator[Callable[[], dict[str, Any]]]:
    """The same profile run as the cluster's admin, alongside (the runs share the cluster as
    `--parallel` workers do); yields how to wait for its results. Stopped with SIGTERM, so that
    it cleans up, if the test ends first."""
    run = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "run", "--kubeconfig", str(sandbox.kubeconfig),
         "--profile", profile, "--output", str(output), *NO_GATEWAY],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def results() -> dict[str, Any]:
        run.wait(timeout=RUN_TIMEOUT_S)
        data: dict[str, Any] = json.loads((output / "results.json").read_text())
        return data

    try:
        yield results
    finally:
        if run.poll() is None:
            run.terminate()
            run.wait(timeout=120)


@pytest.mark.parametrize("profile", ["cncf-ai-v1.35", "batch"])
def test_least_privilege_plugin_run_matches_admin(
    profile: str,
    sandbox: sbx.Sandbox,
    bind: BindFn,
    progress_server: tuple[int, list[dict[str, Any]]],
    tmp_path: Path,
) -> None:
    port, received = progress_server
    account = bind(rbac.rules())
    with admin_run(sandbox, tmp_path / "admin", profile) as as_admin:
        run = entrypoint(
            sandbox, account, tmp_path / "sonobuoy", port, "--profile", profile, *NO_GATEWAY
        )
        assert "Traceback" not in run.stderr, run.stderr
        results = run.results
        assert (
            run.returncode
            == {"conformant": 0, "not-conformant": 1, "partial": 3}[results["verdict"]]
        ), run.stderr

        # the same outcome as an admin run, check by check
        assert statuses(results) == statuses(as_admin())
    checks = [c for r in results["requirements"] for c in r["checks"]]
    assert checks, "the profile ran no check"
    # skipped is legitimate (no vGPU nodes; controllers running outside the sandbox), failing is not
    assert all(c["status"] in {"passed", "skipped"} for c in checks), [
        (c["id"], c["message"]) for c in checks if c["status"] not in {"passed", "skipped"}
    ]
    assert sum(c["status"] == "passed" for c in checks) > len(checks) // 2

    # Sonobuoy's contract: tarball first, then `done` holding its absolute path
    done = (tmp_path / "sonobuoy" / "done").read_text()
    assert Path(done).is_absolute()
    with tarfile.open(done) as tar:
        names = set(tar.getnames())
        junit = ET.fromstring(tar.extractfile("junit.xml").read())  # type: ignore[union-attr]
    assert {"results.json", "junit.xml", "summary.md"} <= names
    cases = [c.get("name", "") for c in junit.iter("testcase")]
    assert len(cases) == len(set(cases)), "junit testcase names must be unique"
    requirement_ids = {r["id"] for r in results["requirements"]}
    assert all(c.split("/", 1)[0] in requirement_ids and "/" in c for c in cases), cases

    # progress: one POST per finished check, the last one complete
    assert all(p["path"] == "/progress" for p in received)
    finished = [p for p in received if p["completed"]]
    assert len(finished) == len(checks)
    assert finished[-1]["completed"] == finished[-1]["total"] == len(checks)
    assert finished[-1]["failures"] == []
    assert all(isinstance(p["msg"], str) and p["msg"] for p in received)


def test_missing_rule_gives_forbidden_for_the_affected_check_only(
    sandbox: sbx.Sandbox,
    bind: BindFn,
    progress_server: tuple[int, list[dict[str, Any]]],
    tmp_path: Path,
    admin: Cluster,
) -> None:
    port, received = progress_server
    rules = [r for r in rbac.rules() if "resourceclaimtemplates" not in r["resources"]]
    assert len(rules) == len(rbac.rules()) - 1
    account = bind(rules)
    run = entrypoint(
        sandbox, account, tmp_path / "sonobuoy", port,
        "--check", "dra.claim-allocated", "--check", "cluster.reachable",
    )  # fmt: skip
    assert "Traceback" not in run.stderr, run.stderr
    checks = {c["id"]: c for r in run.results["requirements"] for c in r["checks"]}
    assert checks["cluster.reachable"]["status"] == "passed"
    broken = checks["dra.claim-allocated"]
    assert broken["status"] == "error"
    assert "forbidden: " in broken["message"]
    assert "resourceclaimtemplates.resource.k8s.io" in broken["message"]
    assert len(broken["message"].splitlines()) == 1
    assert run.returncode != 0
    assert received[-1]["failures"] == ["dra.claim-allocated"]
    assert (tmp_path / "sonobuoy" / "done").exists()
    # its namespace went away even so (deleted by the service account's own sweep)
    left = admin.list_objects("v1", "Namespace", label_selector=selector(run.results["run_id"]))
    assert all(n["metadata"].get("deletionTimestamp") for n in left), left


def test_unreachable_cluster_still_publishes_results(
    tmp_path: Path, progress_server: tuple[int, list[dict[str, Any]]]
) -> None:
    port, _ = progress_server
    account = tmp_path / "account"
    account.mkdir()
    (account / "token").write_text("not-a-token")
    (account / "ca.crt").write_text("")
    env = {
        **os.environ,
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": "1",
        "KAIC_SERVICEACCOUNT_DIR": str(account),
        "SONOBUOY_RESULTS_DIR": str(tmp_path / "sonobuoy"),
        "SONOBUOY_PROGRESS_PORT": str(port),
    }
    done = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "entrypoint"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "kaic: error:" in done.stderr
    tarball = Path((tmp_path / "sonobuoy" / "done").read_text())
    with tarfile.open(tarball) as tar:
        junit = ET.fromstring(tar.extractfile("junit.xml").read())  # type: ignore[union-attr]
    (case,) = junit.iter("testcase")
    assert case.get("name") == "kaic/run-could-not-start"
    assert case.find("failure") is not None


def test_hydrophone_mode_runs_the_focused_checks_and_leaves_its_two_files(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    """The image's command as Hydrophone starts it (no arguments; its E2E_* variables): the
    focused checks run against the cluster, one `•` each in e2e.log, junit_01.xml holds them."""
    results = tmp_path / "results"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("E2E_", "KUBERNETES_"))}
    extra = f"--kubeconfig={sandbox.kubeconfig} --profile=cncf-ai-v1.35"
    env = {**base, "E2E_USE_GO_RUNNER": "true", "E2E_PROVIDER": "skeleton",
           "E2E_FOCUS": "^cluster_baseline/", "RESULTS_DIR": str(results),
           "E2E_EXTRA_ARGS": extra}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "entrypoint"],
        env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    assert done.returncode == 3, done.stderr  # partial: the rest of the profile was not run
    log = (results / "e2e.log").read_text()
    after = log.split("Will run 2 of ", 1)[1]
    assert after.count("•") == 2
    assert "• [PASSED] cluster.reachable" in after
    cases = {c.get("name"): c for c in ET.parse(results / "junit_01.xml").iter("testcase")}
    for name in (
        "cluster_baseline/cluster.reachable",
        "cluster_baseline/cluster.version-supported",
    ):
        assert name in cases
        assert cases[name].find("failure") is None
    assert any("Ginkgo ran 1 suite" in line for line in done.stdout.splitlines()[-30:])
