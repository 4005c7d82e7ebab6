"""The local sandbox: real control plane and AI stack on loopback, emulated GPU hardware.

Python API used by `kaic run` (no kubeconfig) and by the integration tests.
"""

from __future__ import annotations

from pathlib import Path

from conformance.sandbox.build import build
from conformance.sandbox.faults import FAULTS
from conformance.sandbox.lifecycle import (
    COMPONENTS,
    Sandbox,
    attach,
    describe,
    down,
    is_running,
    not_needed,
    up,
)

DEFAULT_DIR = Path("~/.local/state/kaic/sandbox").expanduser()
PROBE_IMAGE_SUFFIX = "kaic-probe"

__all__ = [
    "COMPONENTS",
    "DEFAULT_DIR",
    "FAULTS",
    "PROBE_IMAGE_SUFFIX",
    "Sandbox",
    "attach",
    "build",
    "describe",
    "down",
    "is_running",
    "not_needed",
    "up",
]
