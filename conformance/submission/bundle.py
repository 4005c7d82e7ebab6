"""`kaic submission`: the directory a CNCF AI conformance pull request adds.

<out>/PRODUCT.yaml             the checklist, filled in from the run
<out>/README.md                what was run, and how to reproduce it
<out>/conformance-report.yaml  Gateway-API-style ConformanceReport
<out>/results/                 results.json, junit.xml, summary.md of the run
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import yaml

from conformance.errors import KaicError
from conformance.report import results_json, write_reports
from conformance.results import Run
from conformance.submission.checklist import load_checklist, normalize_version
from conformance.submission.conformance_report import build_report
from conformance.submission.product import Product, build_product, items_of


@dataclass
class Submission:
    directory: Path
    product: Product
    written: list[Path]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "product"


def default_directory(version: str, platform_name: str) -> Path:
    return Path("submissions") / f"v{version}" / slug(platform_name)


def profile_for(version: str) -> str:
    return f"cncf-ai-v{version}"


def write_submission(
    results: Path,
    version: str | None,
    metadata: dict[str, str],
    directory: Path | None,
    command: list[str],
) -> Submission:
    version = normalize_version(version) if version else None
    run = results_json.load(results)
    version = version or _version_of(run)
    checklist = load_checklist(version)
    if run.profile != profile_for(version):
        raise KaicError(
            f"{results} is a run of profile {run.profile!r}; a v{version} submission needs a "
            f"run of {profile_for(version)!r} (kaic run --profile {profile_for(version)})"
        )
    checklist.data["metadata"]["kubernetesVersion"] = f"v{version}"
    product = build_product(run, checklist, metadata)
    out = directory or default_directory(version, metadata.get("platformName", ""))
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"# Kubernetes AI Conformance checklist v{version}, filled in by kaic "
        f"{run.kaic_version} from run {run.run_id} ({run.finished}).\n"
        "# Review every entry; empty statuses are for you to decide (see README.md).\n"
    )
    product_path = out / "PRODUCT.yaml"
    product_path.write_text(header + _yaml(product.document), encoding="utf-8")
    report = build_report(run, _implementation(metadata))
    report_path = out / "conformance-report.yaml"
    report_path.write_text(_yaml(report), encoding="utf-8")
    written = [product_path, report_path, *write_reports(run, out / "results")]
    readme = out / "README.md"
    readme.write_text(_readme(run, version, product, command), encoding="utf-8")
    written.append(readme)
    return Submission(out, product, written)


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


def _readme(run: Run, version: str, product: Product, command: list[str]) -> str:
    counts: dict[str, int] = {}
    for _cat, item in items_of(product.document):
        counts[item["status"] or "undecided"] = counts.get(item["status"] or "undecided", 0) + 1
    lines = [
        f"# Kubernetes AI Conformance v{version}: {product.document['metadata']['platformName']}",
        "",
        f"Verdict of kaic {run.kaic_version}: **{run.verdict}** "
        f"(profile `{run.profile}`, run `{run.run_id}`, {run.started} to {run.finished}, "
        f"Kubernetes {run.cluster.get('version') or 'unknown'}).",
        "",
        "Checklist statuses: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ".",
        "",
        "## Files",
        "",
        "- `PRODUCT.yaml`: the public checklist filled in; `evidence` points at testcases of",
        "  `results/junit.xml` (named `<requirement>/<check>`).",
        "- `results/results.json`, `results/junit.xml`, `results/summary.md`: the run's reports.",
        "- `conformance-report.yaml`: core (MUST) and extended (SHOULD) results in the shape of",
        "  Gateway API's ConformanceReport.",
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
    if product.unfilled_metadata:
        lines += ["", "Metadata still to fill in: " + ", ".join(product.unfilled_metadata) + "."]
    return "\n".join(lines) + "\n"
