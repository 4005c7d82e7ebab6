"""`burn`: keep the container's accelerators busy, so that metrics can be seen to follow.

The agent carries no compute runtime (CUDA, ROCm), so on real hardware it cannot load a device
and says so (`"load": "unavailable"`); checks then record utilization as not observable. On the
sandbox's emulated GPUs (`KAIC_EMULATED_GPU_LOAD_DIR` and `KAIC_EMULATED_GPU_UUIDS` set by its
runtime) it marks each of its devices busy, which the emulated exporter reports.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

UNAVAILABLE = ("generating accelerator load needs a compute runtime (CUDA/ROCm) that the probe "
               "agent does not carry")  # fmt: skip


def plan() -> dict[str, Any]:
    directory = os.environ.get("KAIC_EMULATED_GPU_LOAD_DIR", "")
    uuids = [u for u in os.environ.get("KAIC_EMULATED_GPU_UUIDS", "").split(",") if u]
    if directory and uuids:
        return {"load": "emulated", "devices": uuids}
    return {"load": "unavailable", "reason": UNAVAILABLE, "devices": []}


def burn(seconds: float) -> int:
    report = plan()
    json.dump(report, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")
    sys.stdout.flush()
    directory = Path(os.environ.get("KAIC_EMULATED_GPU_LOAD_DIR", "."))
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            for uuid in report["devices"]:
                (directory / uuid).touch()
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    finally:
        for uuid in report["devices"]:
            (directory / uuid).unlink(missing_ok=True)
    return 0
