"""report.html: the run for people, in one self-contained file (inline CSS and SVG, no scripts,
no fetches): the verdict, each requirement with its checks, their messages split into
expected / observed / next step, the objects they made, and a figure where one says it better.
"""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

from conformance.report.figures import figure_of
from conformance.report.summary import STATUS_MARK
from conformance.results import CheckResult, RequirementResult, Run

COLOUR = {
    "passed": "#2da44e",
    "failed": "#d1242f",
    "error": "#8250df",
    "not-applicable": "#bf8700",
    "skipped": "#bf8700",
    "not-implemented": "#6e7781",
    "not-run": "#6e7781",
}
VERDICT_COLOUR = {"conformant": "#2da44e", "partial": "#bf8700", "not-conformant": "#d1242f"}
# failures.failure_message's shape: "expected E; observed O. Next: N"
_MESSAGE = re.compile(
    r"^expected (?P<expected>.*?); observed (?P<observed>.*?)(?:\. Next: (?P<next>.*))?$", re.S
)

STYLE = """
body{font-family:sans-serif;margin:0 auto;max-width:960px;padding:16px;color:#1f2328}
.verdict{color:#fff;padding:16px 20px;border-radius:8px;font-size:24px;font-weight:bold}
.meta{color:#57606a;margin:8px 0 20px}
section{border:1px solid #d0d7de;border-radius:8px;margin:14px 0;padding:10px 16px}
h2{font-size:18px;margin:6px 0}
.badge{color:#fff;border-radius:12px;padding:2px 10px;font-size:13px;margin-left:8px}
.check{border-top:1px solid #eaeef2;padding:8px 0}
.msg dt{font-weight:bold;float:left;width:90px}.msg dd{margin-left:96px}
.objects{color:#57606a;font-size:12px}
figure{margin:8px 0}
"""


def _badge(status: str) -> str:
    return f'<span class="badge" style="background:{COLOUR[status]}">{STATUS_MARK[status]}</span>'


def _message(text: str) -> str:
    match = _MESSAGE.match(text)
    if not match:
        return f"<p>{escape(text)}</p>" if text else ""
    parts = [("Expected", match["expected"]), ("Observed", match["observed"])]
    if match["next"]:
        parts.append(("Next step", match["next"]))
    rows = "".join(f"<dt>{k}</dt><dd>{escape(v)}</dd>" for k, v in parts)
    return f'<dl class="msg">{rows}</dl>'


def _check(check: CheckResult) -> str:
    figure = figure_of(check)
    out = [
        f'<div class="check" id="{escape(check.id)}"><b>{escape(check.id)}</b>'
        f"{_badge(check.status)} <small>{check.duration_s:.1f} s</small>",
        _message(check.message),
    ]
    if figure:
        out.append(f"<figure>{figure.svg}<figcaption>{escape(figure.title)}</figcaption></figure>")
    if check.objects:
        out.append(f'<div class="objects">objects: {escape(", ".join(check.objects))}</div>')
    return "".join(out) + "</div>"


def _requirement(req: RequirementResult) -> str:
    head = (
        f'<section id="{escape(req.id)}"><h2>{escape(req.id)} <small>{req.level}</small>'
        f"{_badge(req.status)}</h2><p>{escape(req.description)}</p>"
    )
    reason = f"<p><i>{escape(req.reason)}</i></p>" if req.reason and not req.checks else ""
    return head + reason + "".join(_check(c) for c in req.checks) + "</section>"


def render(run: Run) -> str:
    cluster = run.cluster
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>kaic {escape(run.profile)}: {run.verdict}</title><style>{STYLE}</style>"
        "</head><body>"
        f'<div class="verdict" style="background:{VERDICT_COLOUR[run.verdict]}">'
        f"{escape(run.profile_title)}: {run.verdict}</div>"
        f'<div class="meta">Cluster {escape(str(cluster.get("server", "?")))} (Kubernetes '
        f"{escape(str(cluster.get('version', '?')))}), run {escape(run.run_id)}, "
        f"{escape(run.started)} to {escape(run.finished)}, kaic {escape(run.kaic_version)}</div>"
        + "".join(_requirement(r) for r in run.requirements)
        + "</body></html>\n"
    )


def write(run: Run, path: Path) -> Path:
    path.write_text(render(run), encoding="utf-8")
    return path
