"""summary.md: the verdict, a table of requirements, and every failure with its message."""

from __future__ import annotations

from pathlib import Path

from conformance.results import Run

STATUS_MARK = {
    "passed": "PASS",
    "failed": "FAIL",
    "error": "ERROR",
    "not-applicable": "N/A",
    "not-implemented": "NOT IMPLEMENTED",
    "not-run": "NOT RUN",
    "skipped": "SKIP",
}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render(run: Run) -> str:
    cluster = run.cluster
    lines = [
        f"# kaic: {run.profile_title}",
        "",
        f"**Verdict: {run.verdict}**",
        "",
        f"- Profile: `{run.profile}`",
        f"- Cluster: {cluster.get('server', '?')} (Kubernetes {cluster.get('version', '?')}, "
        f"context `{cluster.get('context', '?')}`)",
        f"- Run: `{run.run_id}`, {run.started} to {run.finished} ({run.duration_s:.1f}s)",
        "",
        "| Requirement | Level | Status | Checks |",
        "|---|---|---|---|",
    ]
    for req in run.requirements:
        checks = ", ".join(f"`{c.id}` {STATUS_MARK[c.status]}" for c in req.checks) or "-"
        lines.append(f"| `{req.id}` | {req.level} | {STATUS_MARK[req.status]} | {checks} |")
    problems = [
        (req, check)
        for req in run.requirements
        for check in req.checks
        if check.status in ("failed", "error")
    ]
    if problems:
        lines += ["", "## Failures", ""]
        for req, check in problems:
            lines.append(f"### {req.id}/{check.id} ({check.status})")
            lines += ["", _cell(check.message)]
            if check.objects:
                lines += ["", "Objects: " + ", ".join(f"`{o}`" for o in check.objects)]
            lines.append("")
    skipped = [r for r in run.requirements if r.status == "not-applicable"]
    if skipped:
        lines += ["", "## Not applicable", ""]
        for r in skipped:
            conditions = {c.condition for c in r.checks if c.condition}
            said = "; ".join(r.not_applicable_when.get(c, c) for c in sorted(conditions))
            lines.append(f"- `{r.id}`: {_cell(said)} ({_cell(r.reason)})" if said
                         else f"- `{r.id}`: {_cell(r.reason)}")  # fmt: skip
    if run.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in run.notes]
    return "\n".join(lines).rstrip() + "\n"


def write(run: Run, path: Path) -> Path:
    path.write_text(render(run), encoding="utf-8")
    return path
