"""Live progress of a run on the terminal (a pytest plugin object the runner registers)."""

from __future__ import annotations

from typing import Any

import pytest
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from conformance.outcomes import CheckListener
from conformance.report.summary import STATUS_MARK
from conformance.results import CheckResult

STYLE = {"passed": "green", "failed": "red", "error": "magenta", "skipped": "yellow"}


class ProgressDisplay(CheckListener):
    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]checks"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("", total=total)

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        self.progress.start()

    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> None:
        self.progress.update(self.task, description=nodeid.rsplit("::", 1)[-1])

    def check_finished(self, result: CheckResult) -> None:
        style = STYLE[result.status]
        line = f"[{style}]{STATUS_MARK[result.status]:5}[/] {result.id} ({result.duration_s:.1f}s)"
        if result.status != "passed" and result.message:
            line += f"\n      {result.message.splitlines()[0][:300]}"
        self.progress.console.print(line, highlight=False)
        self.progress.advance(self.task)

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        self.progress.stop()
