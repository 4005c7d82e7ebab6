"""Reports of a run: results.json (the contract), junit.xml, summary.md, report.html."""

from __future__ import annotations

from pathlib import Path

from conformance.report import html, junit, results_json, summary
from conformance.results import Run

__all__ = ["write_reports"]


def write_reports(run: Run, directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = [
        results_json.write(run, directory / "results.json"),
        junit.write(run, directory / "junit.xml"),
        summary.write(run, directory / "summary.md"),
        html.write(run, directory / "report.html"),
    ]
    return written
