"""`kaic entrypoint` as Hydrophone's --conformance-image: its variables, e2e.log and
junit_01.xml in RESULTS_DIR, the `Ginkgo ran N suite` line Hydrophone waits for, exit codes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conformance.errors import KaicError
from conformance.incluster.hydrophone import HydrophoneEnv, focused
from conformance.settings import Settings

# What Hydrophone looks for (pkg/conformance/client/logs.go): among the log's last 30 lines
DONE = re.compile(r"Ginkgo ran (00|[1-9]\d{0,2}) suite")
WILL_RUN = re.compile(r"Will run (\d+) of (\d+) specs")


def hydrophone(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The image's command as Hydrophone starts it: no arguments, only its variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("E2E_", "KUBERNETES_"))}
    variables = {"E2E_USE_GO_RUNNER": "true", "E2E_PROVIDER": "skeleton",
                 "E2E_FOCUS": r"\[Conformance\]", "E2E_VERBOSITY": "4",
                 "RESULTS_DIR": str(tmp_path / "results"), **env}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "conformance.cli", "entrypoint"],
        env={**base, **variables}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def finished_for_hydrophone(done: subprocess.CompletedProcess[str]) -> bool:
    return any(DONE.search(line) for line in done.stdout.splitlines()[-30:])


def test_the_environment_becomes_entrypoint_options() -> None:
    assert HydrophoneEnv.from_environ({}) is None
    env = HydrophoneEnv.from_environ({
        "E2E_USE_GO_RUNNER": "true",
        "E2E_EXTRA_ARGS": "--profile=cncf-ai-v1.36 --observe-window=20",
        "E2E_EXTRA_GINKGO_ARGS": "--procs=2 -v", "E2E_DRYRUN": "true",
    })  # fmt: skip
    assert env is not None
    assert env.results_dir == Path("/tmp/results")
    assert env.dry_run
    assert env.argv() == ["--profile=cncf-ai-v1.36", "--observe-window=20", "--parallel", "2"]


def test_focus_and_skip_select_by_testcase_name() -> None:
    settings = Settings(run_id="20261203-000000-abcd", profile="cncf-ai-v1.36")
    env = HydrophoneEnv(Path("/tmp/r"), focus="^gang_scheduling/", skip="never-partial")
    everything, chosen = focused(settings, env)
    assert chosen == ["gang.fitting-gang-runs", "gang.waits-for-pods-ready"]
    assert len(everything) > len(chosen)
    _, default = focused(settings, HydrophoneEnv(Path("/tmp/r"), focus=r"\[Conformance\]"))
    assert default == everything
    with pytest.raises(KaicError, match="leave no check to run"):
        focused(settings, HydrophoneEnv(Path("/tmp/r"), focus="no-such-check"))


def test_dry_run_reports_progress_the_way_hydrophone_reads_it(tmp_path: Path) -> None:
    done = hydrophone(tmp_path, E2E_DRYRUN="true", E2E_FOCUS="secure_accelerator_access/",
                      E2E_EXTRA_ARGS="--profile=cncf-ai-v1.36")  # fmt: skip
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "results" / "e2e.log").read_text()
    match = WILL_RUN.search(log)
    assert match
    assert match.group(1) == "4"
    assert int(match.group(2)) > 4
    assert "secure-access.count-matches" in log
    assert finished_for_hydrophone(done)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"E2E_EXTRA_ARGS": "--kubeconfig=/nonexistent"}, "kubeconfig /nonexistent does not exist"),
        ({"E2E_FOCUS": "("}, "E2E_FOCUS/E2E_SKIP: not a regular expression"),
        ({"E2E_EXTRA_ARGS": "--bogus"}, "bad options"),
    ],
)
def test_a_run_that_cannot_start_still_leaves_both_files(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    """Hydrophone copies both files back before it reads the exit code; a missing one leaves
    its namespace behind."""
    done = hydrophone(tmp_path, **env)
    assert done.returncode == 2
    assert "Traceback" not in done.stdout + done.stderr
    assert finished_for_hydrophone(done)
    assert message in (tmp_path / "results" / "e2e.log").read_text()
    (case,) = ET.parse(tmp_path / "results" / "junit_01.xml").iter("testcase")
    assert case.get("name") == "kaic/run-could-not-start"
    assert message in str(case.find("failure").get("message"))  # type: ignore[union-attr]
