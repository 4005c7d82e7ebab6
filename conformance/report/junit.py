"""junit.xml with one testcase per (requirement, check), named `<requirement>/<check-id>`.

Sonobuoy keeps only the testcase name, so names describe themselves. Requirements without an
implemented check appear as skipped `<requirement>/not-implemented`, never as passed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from conformance.results import Run


def testcase_name(requirement: str, check: str) -> str:
    return f"{requirement}/{check}"


def render(run: Run) -> ET.Element:
    suite = ET.Element("testsuite", name=f"kaic {run.profile}", timestamp=run.started)
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for req in run.requirements:
        classname = f"kaic.{run.profile}.{req.level}"
        if req.status in ("not-implemented", "not-run"):
            case = ET.SubElement(
                suite,
                "testcase",
                name=testcase_name(req.id, req.status),
                classname=classname,
                time="0",
            )
            ET.SubElement(case, "skipped", message=f"{req.level} {req.id}: {req.reason}")
            counts["tests"] += 1
            counts["skipped"] += 1
            continue
        for check in req.checks:
            case = ET.SubElement(
                suite,
                "testcase",
                name=testcase_name(req.id, check.id),
                classname=classname,
                time=f"{check.duration_s:.3f}",
            )
            counts["tests"] += 1
            if check.status == "failed":
                ET.SubElement(case, "failure", message=check.message).text = check.message
                counts["failures"] += 1
            elif check.status == "error":
                ET.SubElement(case, "error", message=check.message).text = check.message
                counts["errors"] += 1
            elif check.status == "skipped":
                ET.SubElement(case, "skipped", message=check.message)
                counts["skipped"] += 1
            if check.objects:
                ET.SubElement(case, "system-out").text = "objects: " + ", ".join(check.objects)
    for key, value in counts.items():
        suite.set(key, str(value))
    suite.set("time", f"{run.duration_s:.3f}")
    suites = ET.Element("testsuites", name="kaic")
    suites.append(suite)
    return suites


def write(run: Run, path: Path) -> Path:
    tree = ET.ElementTree(render(run))
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)
    return path
