"""report.html: self-contained, and what headless Chromium shows of it is what the run measured
(the verdict's colour, a failure's expected / observed / next step, the traffic split's bars in
the measured proportions, the replicas over time)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from conformance.report import html
from conformance.report.figures import EXPECTED, OBSERVED, SECOND
from conformance.results import CheckResult, RequirementResult, Run

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]  # fmt: skip
FAILURE = (
    "expected the HPA to scale kaic-model above 1 replica; observed 1 replica after 120 s. "
    "Next: check the adapter's rules"
)


def sample_run() -> Run:
    split = CheckResult("gateway-api.weighted-split", "passed", 15.0, observed={
        "split": {"weights": {"backend-a": 70, "backend-b": 30},
                  "counts": {"backend-a": 120, "backend-b": 80}}})  # fmt: skip
    history = [
        {"t_s": 0, "current": 1, "desired": 1},
        {"t_s": 5, "current": 1, "desired": 3},
        {"t_s": 10, "current": 3, "desired": 3},
        {"t_s": 20, "current": 1, "desired": 1},
    ]
    hpa = CheckResult("pod-autoscaling.custom-metric", "failed", 120.0, message=FAILURE,
                      observed={"replica_history": history})  # fmt: skip
    return Run(
        profile="cncf-ai-v1.36", profile_title="CNCF Kubernetes AI Conformance v1.36",
        run_id="20261203-000000-abcd", cluster={"server": "https://10.0.0.1:6443",
                                                "version": "v1.36.0"},
        started="2026-12-03T00:00:00Z", finished="2026-12-03T00:05:00Z", duration_s=300,
        requirements=[
            RequirementResult("ai_inference", "MUST", "passed", [split], "networking", "Gateway"),
            RequirementResult("pod_autoscaling", "MUST", "failed", [hpa], "scheduling", "HPA",
                              reason=f"pod-autoscaling.custom-metric: {FAILURE}"),
        ],
        kaic_version="0.1.0",
    )  # fmt: skip


def browser(page: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if CHROMIUM is None:
        pytest.fail("chromium is not installed: `make setup` installs Debian's package (as root)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args, page.as_uri()],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip


def test_the_report_fetches_nothing(tmp_path: Path) -> None:
    text = html.render(sample_run())
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "url(" not in text
    assert "@import" not in text
    assert "<script" not in text


def test_chromium_shows_the_verdict_the_failure_and_the_steps(tmp_path: Path) -> None:
    page = html.write(sample_run(), tmp_path / "report.html")
    dom = browser(page, "--dump-dom").stdout
    assert "CNCF Kubernetes AI Conformance v1.36: not-conformant" in dom
    assert "<dt>Expected</dt><dd>the HPA to scale kaic-model above 1 replica</dd>" in dom
    assert "<dt>Next step</dt><dd>check the adapter's rules</dd>" in dom
    assert dom.count("<svg") == 2


def rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def longest_run(flags: list[bool]) -> int:
    best = run = 0
    for flag in flags:
        run = run + 1 if flag else 0
        best = max(best, run)
    return best


def bar_heights(image: Image.Image, colour: str) -> list[int]:
    """Heights of the vertical bars of one colour, left to right (legend swatches excluded)."""
    width, height = image.size
    pixels = image.load()
    assert pixels is not None
    columns: dict[int, int] = {}
    for x in range(width):
        n = longest_run([pixels[x, y][:3] == rgb(colour) for y in range(height)])
        if n > 12:  # taller than a legend swatch
            columns[x] = n
    bars: list[list[int]] = []
    for x in sorted(columns):
        if bars and x - bars[-1][-1] <= 1:
            bars[-1].append(x)
        else:
            bars.append([x])
    return [max(columns[x] for x in bar) for bar in bars if len(bar) > 3]


def test_the_screenshot_shows_what_was_measured(tmp_path: Path) -> None:
    page = html.write(sample_run(), tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    browser(page, "--window-size=1000,1600", f"--screenshot={shot}")
    image = Image.open(shot).convert("RGB")
    assert image.getpixel((40, 40)) == rgb(html.VERDICT_COLOUR["not-conformant"])
    # the traffic-split figure: the rows holding the weights' colour (the HPA figure has none)
    expected = rgb(EXPECTED)
    rows = [
        y
        for y in range(image.height)
        if any(image.getpixel((x, y)) == expected for x in range(0, image.width, 2))
    ]
    split = image.crop((0, min(rows), image.width, max(rows) + 1))
    weights = bar_heights(split, EXPECTED)
    served = bar_heights(split, OBSERVED)
    assert len(weights) == 2, weights
    assert weights[0] / weights[1] == pytest.approx(70 / 30, rel=0.05)
    assert served[0] / served[1] == pytest.approx(120 / 80, rel=0.05)  # the split as measured
    second = rgb(SECOND)
    desired = sum(
        1
        for y in range(image.height)
        for x in range(image.width)
        if image.getpixel((x, y)) == second
    )
    assert desired > 100, "the desired-replicas line of the HPA figure"
