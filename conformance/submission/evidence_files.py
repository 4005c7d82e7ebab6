"""The evidence files a submission's PRODUCT.yaml cites, readable without kaic.

results/<requirement>.md              status, the checks, what is cited and what is not
results/<requirement>/junit.xml       the testcases cited (for Implemented: only those that passed)
results/<requirement>/<check>.md      what was deployed, what was observed, the outcome
results/<requirement>/<check>-<figure>.svg   the check's figure, where it has one

Paths are relative to PRODUCT.yaml's folder and written without `file://` or `#fragment`,
because the CNCF validator joins each evidence string to that folder as it is.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import yaml

from conformance.report import junit
from conformance.report.figures import figure_of
from conformance.report.summary import STATUS_MARK
from conformance.results import CheckResult, RequirementResult, Run

RESULTS = "results"


def requirement_file(req_id: str) -> str:
    return f"{RESULTS}/{req_id}.md"


def cited_junit(req_id: str) -> str:
    return f"{RESULTS}/{req_id}/junit.xml"


def check_file(req_id: str, check_id: str) -> str:
    return f"{RESULTS}/{req_id}/{check_id}.md"


def figure_file(check_id: str, figure: str) -> str:
    return f"{check_id}-{figure}.svg"


def cited_checks(req: RequirementResult, status: str) -> list[CheckResult]:
    """Implemented cites only the checks that passed; other statuses show every check."""
    if status == "Implemented":
        return [c for c in req.checks if c.status == "passed"]
    return list(req.checks)


def write_evidence(run: Run, statuses: dict[str, str], directory: Path) -> list[Path]:
    """The files for every requirement of the run that the checklist lists (`statuses`)."""
    written: list[Path] = []
    for req in run.requirements:
        if req.id not in statuses:
            continue
        status = statuses[req.id]
        folder = directory / RESULTS / req.id
        folder.mkdir(parents=True, exist_ok=True)
        cited = cited_checks(req, status)
        text = _requirement_md(req, status, cited)
        written.append(_write(directory / requirement_file(req.id), text))
        only_cited = replace(run, requirements=[replace(req, checks=cited)])
        written.append(junit.write(only_cited, directory / cited_junit(req.id)))
        for check in req.checks:
            written += _check_files(run, req, check, folder)
    return written


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _requirement_md(req: RequirementResult, status: str, cited: list[CheckResult]) -> str:
    lines = [
        f"# {req.id} ({req.level}): {status or 'undecided'}",
        "",
        req.description,
        "",
        f"kaic's status for it: **{req.status}**" + (f" ({req.reason})" if req.reason else ""),
        "",
        "| Check | Outcome | Evidence |",
        "|---|---|---|",
    ]
    for check in req.checks:
        link = f"[{check.id}.md]({req.id}/{check.id}.md)"
        lines.append(f"| `{check.id}` | {STATUS_MARK[check.status]} | {link} |")
    for check in req.checks:
        figure = figure_of(check)
        if figure:
            lines += ["", f"![{figure.title}]({req.id}/{figure_file(check.id, figure.name)})"]
    left_out = [c for c in req.checks if c not in cited]
    lines += ["", f"Testcases cited: [{req.id}/junit.xml]({req.id}/junit.xml) ("
              + (", ".join(c.id for c in cited) or "none") + ")."]  # fmt: skip
    if left_out:
        lines.append(
            "Not cited for this status: "
            + ", ".join(f"{c.id} ({c.status}: {c.message or 'no message'})" for c in left_out)
            + "."
        )
    return "\n".join(lines) + "\n"


def _check_files(run: Run, req: RequirementResult, check: CheckResult, folder: Path) -> list[Path]:
    written = []
    figure = figure_of(check)
    lines = [
        f"# {check.id}: {STATUS_MARK[check.status]}",
        "",
        f"Requirement `{req.id}` ({req.level}); kaic {run.kaic_version}, run `{run.run_id}`, "
        f"cluster {run.cluster.get('server', '?')} (Kubernetes {run.cluster.get('version', '?')}).",
        "",
        "## Outcome",
        "",
        f"{check.status} after {check.duration_s:.1f} s"
        + (f": {check.message}" if check.message else "."),
    ]
    if check.timing:
        lines += ["", f"Time waiting on the cluster: {check.timing.get('cluster_wait_s')} s, "
                  f"{check.timing.get('api_requests')} API requests."]  # fmt: skip
    if figure:
        name = figure_file(check.id, figure.name)
        written.append(_write(folder / name, figure.svg))
        lines += ["", "## Figure", "", f"![{figure.title}]({name})"]
    lines += ["", "## Observed", "", "```json", json.dumps(check.observed, indent=2), "```"]
    if check.objects:
        lines += ["", "## Objects", ""] + [f"- `{o}`" for o in check.objects]
    if check.manifests:
        lines += ["", "## Deployed", "", "The manifests the check applied, in order "
                  "(kaic adds its run and check labels when it applies them).", ""]  # fmt: skip
        for manifest in check.manifests:
            meta = manifest.get("metadata") or {}
            name = "/".join(p for p in (meta.get("namespace"), meta.get("name")) if p)
            lines += [f"### {manifest.get('kind', '?')} {name}", "", "```yaml",
                      yaml.safe_dump(manifest, sort_keys=False).rstrip(), "```", ""]  # fmt: skip
    written.insert(0, _write(folder / f"{check.id}.md", "\n".join(lines).rstrip() + "\n"))
    return written
