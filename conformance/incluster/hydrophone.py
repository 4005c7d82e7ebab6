"""`kaic entrypoint` run by Hydrophone as its `--conformance-image` (kubernetes-sigs/hydrophone).

Hydrophone starts the image's own command with the E2E_* variables of the upstream conformance
image (it always sets E2E_USE_GO_RUNNER, which is how this mode is recognized), streams the
container's log until a line `Ginkgo ran N suite` appears among its last lines, reads progress
from `/tmp/results/e2e.log` (a `Will run N of M specs` line, then one `•` per finished spec), copies
back `e2e.log` and `junit_01.xml` from `/tmp/results`, and takes the container's exit code as
the result. So this mode writes exactly those two files, also when the run cannot start.

E2E_FOCUS and E2E_SKIP are regular expressions over kaic's testcase names
(`<requirement>/<check-id>`); the default focus `\\[Conformance\\]` selects the whole profile.
E2E_EXTRA_ARGS are `kaic entrypoint` options (`--profile=cncf-ai-v1.36`); `--procs=N` in
E2E_EXTRA_GINKGO_ARGS becomes `--parallel N`; E2E_DRYRUN lists the checks without running them.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

from conformance import runner
from conformance.errors import KaicError
from conformance.incluster.entrypoint import error_junit
from conformance.outcomes import CheckListener
from conformance.plugin import selected_check_ids
from conformance.profiles import load_profile
from conformance.report.junit import testcase_name
from conformance.results import EXIT_USAGE, CheckResult
from conformance.settings import Settings

DEFAULT_FOCUS = r"\[Conformance\]"
E2E_LOG, JUNIT = "e2e.log", "junit_01.xml"
REPORTS = "kaic-reports"
_PROCS = re.compile(r"^--(?:procs|nodes)=(\d+)$")


@dataclass(frozen=True)
class HydrophoneEnv:
    results_dir: Path
    focus: str = ""
    skip: str = ""
    extra_args: tuple[str, ...] = ()
    ginkgo_args: tuple[str, ...] = ()
    dry_run: bool = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> HydrophoneEnv | None:
        if "E2E_USE_GO_RUNNER" not in environ:
            return None
        return cls(
            results_dir=Path(environ.get("RESULTS_DIR") or "/tmp/results"),
            focus=environ.get("E2E_FOCUS", ""),
            skip=environ.get("E2E_SKIP", ""),
            extra_args=tuple(shlex.split(environ.get("E2E_EXTRA_ARGS", ""))),
            ginkgo_args=tuple(shlex.split(environ.get("E2E_EXTRA_GINKGO_ARGS", ""))),
            dry_run=environ.get("E2E_DRYRUN", "").lower() == "true",
        )

    def argv(self) -> list[str]:
        """The `kaic entrypoint` options Hydrophone's variables stand for."""
        procs = [m.group(1) for a in self.ginkgo_args if (m := _PROCS.match(a))]
        return [*self.extra_args, *(["--parallel", procs[-1]] if procs else [])]


def focused(settings: Settings, env: HydrophoneEnv) -> tuple[list[str], list[str]]:
    """(all checks of the profile, the ones E2E_FOCUS and E2E_SKIP leave)."""
    everything = selected_check_ids(settings)
    profile = load_profile(settings.profile)
    names = {c: [c] for c in everything}
    for req in profile.requirements:
        for c in req.checks:
            names.setdefault(c, [c]).append(testcase_name(req.id, c))
    try:
        focus = re.compile(env.focus) if env.focus and env.focus != DEFAULT_FOCUS else None
        skip = re.compile(env.skip) if env.skip else None
    except re.error as exc:
        raise KaicError(f"E2E_FOCUS/E2E_SKIP: not a regular expression ({exc})") from None
    chosen = [
        c
        for c in everything
        if (focus is None or any(focus.search(n) for n in names[c]))
        and not (skip and any(skip.search(n) for n in names[c]))
    ]
    if not chosen:
        raise KaicError(f"E2E_FOCUS {env.focus!r} / E2E_SKIP {env.skip!r} leave no check to run")
    return everything, chosen


@dataclass
class E2ELog(CheckListener):
    """A pytest plugin object: Ginkgo-style progress lines in e2e.log and on stdout."""

    log: IO[str]

    def line(self, text: str) -> None:
        self.log.write(text + "\n")
        self.log.flush()
        print(text, flush=True)

    def check_finished(self, result: CheckResult) -> None:
        mark = {"passed": "PASSED", "skipped": "SKIPPED"}.get(result.status, "FAILED")
        detail = f": {result.message}" if result.message and mark != "PASSED" else ""
        self.line(f"• [{mark}] {result.id} [{result.duration_s:.1f} s]{detail}")


def _error_files(env: HydrophoneEnv, message: str) -> None:
    env.results_dir.mkdir(parents=True, exist_ok=True)
    (env.results_dir / E2E_LOG).write_text(
        f"kaic: error: {message}\nWill run 0 of 0 specs\n", encoding="utf-8"
    )
    error_junit(env.results_dir / JUNIT, message)


def usage_error(env: HydrophoneEnv, message: str) -> None:
    _error_files(env, message)
    _finish(time.monotonic(), EXIT_USAGE)


def _finish(started: float, code: int) -> None:
    print(f"Ginkgo ran 1 suite in {time.monotonic() - started:.1f}s", flush=True)
    print("Test Suite Passed" if code == 0 else "Test Suite Failed", flush=True)


def run(settings: Settings, env: HydrophoneEnv, *, workers: int) -> int:
    started = time.monotonic()
    output = env.results_dir / REPORTS
    shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True)
    try:
        everything, chosen = focused(settings, env)
    except KaicError as exc:
        print(f"kaic: error: {exc}", flush=True)
        _error_files(env, str(exc))
        _finish(started, EXIT_USAGE)
        return EXIT_USAGE
    with (env.results_dir / E2E_LOG).open("w", encoding="utf-8") as log:
        e2e = E2ELog(log)
        e2e.line(f"kaic {settings.profile}, run {settings.run_id}")
        e2e.line(f"Will run {len(chosen)} of {len(everything)} specs")
        if env.dry_run:
            for check in chosen:
                e2e.line(f"  {check}")
            code = 0
        else:
            code = _run(replace(settings, output=output, checks=tuple(chosen)), e2e, workers, env)
        e2e.line(
            f"Ran {len(chosen)} of {len(everything)} Specs in {time.monotonic() - started:.1f} s"
        )
    _finish(started, code)
    return code


def _run(settings: Settings, e2e: E2ELog, workers: int, env: HydrophoneEnv) -> int:
    try:
        code = runner.run(settings, workers=workers, plugins=[e2e])
    except KaicError as exc:
        e2e.line(f"kaic: error: {exc}")
        error_junit(env.results_dir / JUNIT, str(exc))
        return EXIT_USAGE
    junit = (settings.output or Path()) / "junit.xml"
    if junit.exists():
        shutil.copyfile(junit, env.results_dir / JUNIT)
    else:
        error_junit(env.results_dir / JUNIT, f"the run ended (exit {code}) without a junit.xml")
    return code
