"""The Dockerfile, short of building it (no container engine here): what it copies is enough
for a working package, and it agrees with the manifests kaic prints."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from conformance.incluster import manifests

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    lines = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines()
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip())
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_user_and_command_match_the_manifests() -> None:
    steps = instructions()
    user = next(arg for op, arg in steps if op == "USER")
    cmd = json.loads(next(arg for op, arg in steps if op == "CMD"))
    spec = manifests.sonobuoy_plugin("cncf-ai-v1.35")["spec"]
    assert int(user.split(":")[0]) == spec["securityContext"]["runAsUser"]
    assert cmd[0] == spec["command"][0]
    assert cmd[1] == spec["args"][0] == "entrypoint"


def test_the_copied_context_builds_a_complete_package(tmp_path: Path) -> None:
    context = tmp_path / "context"
    for op, arg in instructions():
        if op != "COPY":
            continue
        *sources, dest = arg.split()
        for source in sources:
            src = ROOT / source
            target = context / dest / (src.name if dest.endswith("/") and src.is_file() else "")
            if src.is_dir():
                shutil.copytree(src, context / dest, dirs_exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, target if dest.endswith("/") else context / dest)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(context)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = wheels.glob("kaic-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "conformance/agent/__main__.py" in names
    assert "conformance/incluster/entrypoint.py" in names
    assert "conformance/_data/results.schema.json" in names
    assert "conformance/_data/profiles/cncf-ai-v1.35.yaml" in names
    assert "conformance/_data/profiles/checklists/AIConformance-1.35.yaml" in names
    assert any(n.endswith("entry_points.txt") for n in names)
