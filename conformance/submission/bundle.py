"""`kaic submission`: the directory a CNCF AI conformance pull request adds.

<out>/PRODUCT.yaml             the checklist, filled in from the run
<out>/README.md                what was run, and how to reproduce it
<out>/conformance-report.yaml  Gateway-API-style ConformanceReport
<out>/results/                 the run's results.json, junit.xml, summary.md, report.html, and
                               the evidence files PRODUCT.yaml cites (evidence_files.py)

It refuses, one line per reason, a submission the CNCF reviewers would refuse: metadata not
given, or a MUST item that is not Implemented (or an N/A the checklist allows). `--draft`
writes it anyway, marked as a draft.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from conformance.errors import KaicError
from conformance.report import results_json, write_reports
from conformance.results import Run
from conformance.submission.checklist import Checklist, load_checklist, normalize_version
from conformance.submission.conformance_report import build_report
from conformance.submission.evidence_files import write_evidence
from conformance.submission.product import Product, build_product, items_of
from conformance.submission.validate import K8S_CONFORMANCE_URL, validate


class SubmissionRefused(Exception):
    """The run or the metadata would not pass review; each line is one reason (exit 1)."""

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("\n".join(reasons))
        self.reasons = reasons


@dataclass
class Submission:
    directory: Path
    product: Product
    written: list[Path]
    draft: bool = False
    # what the CNCF validator's offline rules still say about the written PRODUCT.yaml
    validator_findings: list[str] = field(default_factory=list)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "product"


def default_directory(version: str, platform_name: str) -> Path:
    return Path("submissions") / f"v{version}" / slug(platform_name)


def profile_for(version: str) -> str:
    return f"cncf-ai-v{version}"


def _load(results: Path, version: str | None) -> tuple[Run, Checklist]:
    version = normalize_version(version) if version else None
    run = results_json.load(results)
    version = version or _version_of(run)
    checklist = load_checklist(version)
    if run.profile != profile_for(version):
        raise KaicError(
            f"{results} is a run of profile {run.profile!r}; a v{version} submission needs a "
            f"run of {profile_for(version)!r} (kaic run --profile {profile_for(version)})"
        )
    return run, checklist


def _check_url(metadata: dict[str, str]) -> None:
    url = metadata.get("k8sConformanceUrl", "")
    if url and not K8S_CONFORMANCE_URL.match(url):
        raise KaicError(
            f"--k8s-conformance-url {url!r}: expected "
            "https://github.com/cncf/k8s-conformance/tree/master/vX.Y/<product>"
        )


def refusals(product: Product) -> list[str]:
    reasons = [f"metadata: {f} is required by the CNCF validator" for f in product.missing_metadata]
    reasons += [f"MUST {line}" for line in product.not_implemented_musts]
    return reasons


def write_submission(
    results: Path,
    version: str | None,
    metadata: dict[str, str],
    directory: Path | None,
    command: list[str],
    *,
    draft: bool = False,
) -> Submission:
    run, checklist = _load(results, version)
    _check_url(metadata)
    checklist.data["metadata"]["kubernetesVersion"] = f"v{checklist.version}"
    product = build_product(run, checklist, metadata)
    if refusals(product) and not draft:
        raise SubmissionRefused(refusals(product))
    out = directory or default_directory(checklist.version, metadata.get("platformName", ""))
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Kubernetes AI Conformance checklist v{checklist.version}, filled in by kaic "
        f"{run.kaic_version} from run {run.run_id} ({run.finished}).\n"
        + ("# DRAFT (kaic submission --draft): not ready to submit; README.md says why.\n" * draft)
        + "# Evidence paths are relative to this file's folder.\n"
    )
    product_path = out / "PRODUCT.yaml"
    product_path.write_text(header + _yaml(product.document), encoding="utf-8")
    report_path = out / "conformance-report.yaml"
    report_path.write_text(_yaml(build_report(run, _implementation(metadata))), encoding="utf-8")
    written = [product_path, report_path, *write_reports(run, out / "results")]
    statuses = {item["id"]: item["status"] for _cat, item in items_of(product.document)}
    written += write_evidence(run, statuses, out)
    done = Submission(out, product, written, draft, validate(product_path, checklist.path))
    readme = out / "README.md"
    readme.write_text(_readme(run, checklist.version, done, command), encoding="utf-8")
    written.append(readme)
    return done


def _version_of(run: Run) -> str:
    match = re.fullmatch(r"cncf-ai-v(1\.\d+)", run.profile)
    if not match:
        raise KaicError(
            f"profile {run.profile!r} is not a CNCF checklist profile; pass --version "
            "and a results.json of a cncf-ai-v1.xx run"
        )
    return match.group(1)


def _implementation(metadata: dict[str, str]) -> dict[str, object]:
    return {
        "organization": metadata.get("vendorName", ""),
        "project": metadata.get("platformName", ""),
        "url": metadata.get("websiteUrl") or metadata.get("repoUrl", ""),
        "version": metadata.get("platformVersion", ""),
        "contact": [metadata["contactEmailAddress"]] if metadata.get("contactEmailAddress") else [],
    }


def _yaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def _readme(run: Run, version: str, done: Submission, command: list[str]) -> str:
    product = done.product
    counts: dict[str, int] = {}
    for _cat, item in items_of(product.document):
        counts[item["status"] or "undecided"] = counts.get(item["status"] or "undecided", 0) + 1
    lines = [
        f"# Kubernetes AI Conformance v{version}: {product.document['metadata']['platformName']}",
        "",
        *(["**DRAFT: not ready to submit** (written with `--draft`).", ""] if done.draft else []),
        f"Verdict of kaic {run.kaic_version}: **{run.verdict}** "
        f"(profile `{run.profile}`, run `{run.run_id}`, {run.started} to {run.finished}, "
        f"Kubernetes {run.cluster.get('version') or 'unknown'}).",
        "",
        "Checklist statuses: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".",
        "",
        "## Files",
        "",
        "- `PRODUCT.yaml`: the public checklist filled in. Each item's `evidence` names files",
        "  in this folder: `results/<requirement>.md` (the checks and what each observed) and,",
        "  for an Implemented item, `results/<requirement>/junit.xml` holding only the testcases",
        "  that passed.",
        "- `results/<requirement>/<check>.md`: per check, what was deployed (the manifests), what",
        "  was observed, the outcome; figures beside them as SVG.",
        "- `results/report.html`: the whole run, with figures, in one file for a browser.",
        "- `results/results.json`, `results/junit.xml`, `results/summary.md`: the run's reports",
        "  (junit.xml holds every testcase of the run, failed ones included).",
        "- `conformance-report.yaml`: core (MUST) and extended (SHOULD) results in the shape of",
        "  Gateway API's ConformanceReport.",
        "",
        "## The CNCF validator's rules",
        "",
        "Checked offline by kaic (without its network look-ups: URLs answering, vendorName",
        "a CNCF member):",
        "",
        *([f"- {line}" for line in done.validator_findings] or ["- no finding"]),
    ]
    if product.caveats:
        lines += ["", "Note: " + "; ".join(product.caveats) + "."]
    lines += [
        "",
        "## Reproduce",
        "",
        "```sh",
        "pip install kaic" + (f"=={run.kaic_version}" if run.kaic_version[:1].isdigit() else ""),
        f"kaic run --profile {run.profile} --kubeconfig <kubeconfig of the platform>",
        shlex.join(command).replace(str(Path.home()), "~"),
        "```",
    ]
    if product.undecided:
        lines += ["", "## To decide by hand", ""]
        lines += [f"- {line}" for line in product.undecided]
    if product.missing_metadata:
        lines += ["", "Metadata still to give: " + ", ".join(product.missing_metadata) + "."]
    return "\n".join(lines) + "\n"
