"""The Sonobuoy worker contract: results tarball, `done` file, progress updates.

The container gets SONOBUOY_RESULTS_DIR (default /tmp/sonobuoy/results) and
SONOBUOY_PROGRESS_PORT (default 8099). When finished, the plugin writes its results (here a
.tar.gz) there and then the file `done` holding that tarball's absolute path. While it runs it
POSTs {"msg", "total", "completed", "failures"} to localhost:<port>/progress.
"""

from __future__ import annotations

import json
import os
import tarfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.outcomes import CheckListener
from conformance.results import CheckResult, Run

DEFAULT_RESULTS_DIR = "/tmp/sonobuoy/results"
DEFAULT_PROGRESS_PORT = 8099
TARBALL = "kaic-results.tar.gz"
PROGRESS_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class SonobuoyEnv:
    results_dir: Path
    progress_url: str

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> SonobuoyEnv:
        results = environ.get("SONOBUOY_RESULTS_DIR") or DEFAULT_RESULTS_DIR
        port = environ.get("SONOBUOY_PROGRESS_PORT") or str(DEFAULT_PROGRESS_PORT)
        return cls(Path(results).resolve(), f"http://localhost:{port}/progress")


@dataclass
class ProgressReporter(CheckListener):
    """A pytest plugin object: POSTs Sonobuoy progress as each check finishes.

    Progress is best effort: without a Sonobuoy sidecar nobody listens, and the run goes on.
    """

    url: str
    total: int
    completed: int = 0
    failures: list[str] = field(default_factory=list)
    unreachable: str = ""

    def post(self, msg: str) -> None:
        if self.unreachable:
            return
        body = {
            "msg": msg,
            "total": self.total,
            "completed": self.completed,
            "failures": list(self.failures),
        }
        request = urllib.request.Request(
            self.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=PROGRESS_TIMEOUT_S):
                pass
        except (urllib.error.URLError, OSError) as exc:
            self.unreachable = f"{self.url}: {getattr(exc, 'reason', exc)}"

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.post(f"kaic: running {self.total} check(s)")

    def check_finished(self, result: CheckResult) -> None:
        self.completed += 1
        if result.status in ("failed", "error"):
            self.failures.append(result.id)
        self.post(f"kaic: {result.id} {result.status}")


def manual_results(run: Run) -> dict[str, Any]:
    """Sonobuoy's `manual` result format: one item per requirement, its checks inside."""
    status_of = {
        "passed": "passed",
        "failed": "failed",
        "error": "failed",
        "skipped": "skipped",
        "not-applicable": "skipped",
        "not-implemented": "skipped",
        "not-run": "skipped",
    }
    verdict = {"conformant": "passed", "partial": "unknown", "not-conformant": "failed"}
    return {
        "name": f"kaic {run.profile}",
        "status": verdict[run.verdict],
        "meta": {"verdict": run.verdict, "run-id": run.run_id, "kaic": run.kaic_version},
        "items": [
            {
                "name": f"{req.level} {req.id}",
                "status": status_of[req.status],
                "details": {"status": req.status, "reason": req.reason} if req.reason else {},
                "items": [
                    {
                        "name": f"{req.id}/{check.id}",
                        "status": status_of[check.status],
                        "details": {"message": check.message} if check.message else {},
                    }
                    for check in req.checks
                ],
            }
            for req in run.requirements
        ],
    }


def write_manual(run: Run, path: Path) -> Path:
    path.write_text(yaml.safe_dump(manual_results(run), sort_keys=False), encoding="utf-8")
    return path


def publish(report_dir: Path, env: SonobuoyEnv) -> Path:
    """Pack the reports into the results tarball, then write `done` (in that order)."""
    env.results_dir.mkdir(parents=True, exist_ok=True)
    tarball = env.results_dir / TARBALL
    partial = tarball.with_suffix(".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for path in sorted(report_dir.iterdir()):
            if path.is_file():
                tar.add(path, arcname=path.name)
    partial.replace(tarball)
    done = env.results_dir / "done"
    done.write_text(str(tarball), encoding="utf-8")
    return tarball
