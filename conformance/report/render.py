"""The end-of-run summary table on the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from conformance.report.summary import STATUS_MARK
from conformance.results import Run

STYLE = {
    "passed": "green",
    "failed": "red",
    "error": "magenta",
    "not-applicable": "yellow",
    "not-implemented": "dim",
    "not-run": "dim",
    "skipped": "yellow",
}
VERDICT_STYLE = {"conformant": "bold green", "partial": "bold yellow", "not-conformant": "bold red"}


def stdout_console() -> Console:
    """stdout console; wide enough for tables when output goes to a file or pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def stderr_console() -> Console:
    console = Console(stderr=True)
    return console if console.is_terminal else Console(stderr=True, width=160)


def print_run(run: Run, console: Console) -> None:
    table = Table(title=f"{run.profile_title} ({run.cluster.get('server', '?')})")
    table.add_column("Requirement")
    table.add_column("Level")
    table.add_column("Status")
    table.add_column("Checks / reason")
    for req in run.requirements:
        detail = ", ".join(f"{c.id} {STATUS_MARK[c.status]}" for c in req.checks)
        if req.status not in ("passed", "not-implemented") and req.reason:
            detail = f"{detail}\n{req.reason}" if detail else req.reason
        table.add_row(
            req.id, req.level, f"[{STYLE[req.status]}]{STATUS_MARK[req.status]}[/]", detail
        )
    console.print(table)
    console.print(f"Verdict: [{VERDICT_STYLE[run.verdict]}]{run.verdict}[/]")
