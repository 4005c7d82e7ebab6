"""`kaic entrypoint`: the container's command, as a Sonobuoy plugin or a standalone Job.

Runs the suite with the pod's service account (unless --kubeconfig is given), reports progress
to Sonobuoy, and always publishes a results tarball and the `done` file, also when the run could
not start, so that Sonobuoy never waits for a plugin that has given up.
"""

from __future__ import annotations

import shutil
import threading
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from conformance import runner
from conformance.errors import KaicError
from conformance.incluster.sonobuoy import ProgressReporter, SonobuoyEnv, publish, write_manual
from conformance.plugin import selected_check_ids
from conformance.report import results_json
from conformance.results import EXIT_USAGE
from conformance.settings import Settings

REPORTS = "kaic-reports"


def run(settings: Settings, *, result_format: str, linger_s: float, workers: int) -> int:
    console = Console(stderr=True)
    env = SonobuoyEnv.from_environ()
    output = env.results_dir / REPORTS
    if output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True)
    settings = replace(settings, output=output)
    reporter = ProgressReporter(env.progress_url, total=0)
    try:
        reporter.total = len(selected_check_ids(settings))
        code = runner.run(settings, workers=workers, plugins=[reporter], console=console)
    except KaicError as exc:
        console.print(f"kaic: error: {exc}", highlight=False)
        (output / "error.txt").write_text(f"{exc}\n", encoding="utf-8")
        error_junit(output / "junit.xml", str(exc))
        code = EXIT_USAGE
    results = output / "results.json"
    if results.exists():
        run_ = results_json.load(results)
        if result_format == "manual":
            write_manual(run_, output / "manual-results.yaml")
    if reporter.unreachable:
        console.print(f"(progress not reported: {reporter.unreachable})", highlight=False)
    tarball = publish(output, env)
    console.print(f"Results: {tarball} (done file: {env.results_dir / 'done'})")
    if linger_s > 0:
        console.print(f"Keeping the pod for {linger_s:.0f}s to fetch {tarball} (kubectl cp)")
        threading.Event().wait(linger_s)  # interrupted by SIGTERM/Ctrl-C like any wait
    return code


def error_junit(path: Path, message: str) -> None:
    """One failed testcase, so junit readers (Sonobuoy) show why nothing ran."""
    from xml.etree import ElementTree as ET

    suites = ET.Element("testsuites", name="kaic")
    suite = ET.SubElement(suites, "testsuite", name="kaic", tests="1", failures="1")
    case = ET.SubElement(suite, "testcase", name="kaic/run-could-not-start", time="0")
    ET.SubElement(case, "failure", message=message).text = message
    ET.ElementTree(suites).write(path, encoding="utf-8", xml_declaration=True)
