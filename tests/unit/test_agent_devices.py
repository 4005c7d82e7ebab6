"""The probe agent's `devices` report, on a fake /dev tree and environment."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conformance.agent import devices, nvml


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("nvidia0", "nvidia3", "nvidiactl", "nvidia-uvm", "dri/renderD128", "kfd", "null"):
        (tmp_path / "dev" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "dev" / name).touch()
    return tmp_path


def no_nvml() -> dict[str, Any]:
    return {"available": False, "error": "not here"}


def test_device_nodes_by_vendor(root: Path) -> None:
    report = devices.report(str(root), environ={}, read_nvml=no_nvml)
    assert report["device_nodes"] == [
        "/dev/dri/renderD128", "/dev/kfd", "/dev/nvidia-uvm", "/dev/nvidia0", "/dev/nvidia3",
        "/dev/nvidiactl",
    ]  # fmt: skip
    assert report["gpu_device_nodes"] == ["/dev/dri/renderD128", "/dev/nvidia0", "/dev/nvidia3"]


@pytest.mark.parametrize(
    ("environ", "visible"),
    [
        ({"NVIDIA_VISIBLE_DEVICES": "GPU-a,GPU-b"}, ["GPU-a", "GPU-b"]),
        ({"NVIDIA_VISIBLE_DEVICES": "void"}, []),
        ({"NVIDIA_VISIBLE_DEVICES": "all"}, []),
        ({"GPU_DEVICE_0": "gpu-3", "GPU_DEVICE_1": "gpu-1"}, ["gpu-3", "gpu-1"]),
        ({"AMD_VISIBLE_DEVICES": "0"}, ["0"]),
        ({"HOME": "/root"}, []),
    ],
)
def test_visible_devices_from_the_runtime_env(
    tmp_path: Path, environ: dict[str, str], visible: list[str]
) -> None:
    report = devices.report(str(tmp_path), environ=environ, read_nvml=no_nvml)
    assert report["visible_devices"] == visible
    assert "HOME" not in report["env"]


def test_cuda_version_decoding() -> None:
    assert nvml.cuda_version(12080) == "12.8"
    assert nvml.cuda_version(11040) == "11.4"


def test_missing_library_is_reported_not_raised() -> None:
    result = nvml.read("libnot-there.so.9")
    assert result["available"] is False
    assert "libnot-there.so.9" in result["error"]


def test_command_prints_one_json_document() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "conformance.agent", "devices"],
        capture_output=True, text=True, check=True,
        env={"GPU_DEVICE_0": "gpu-2", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    report = json.loads(out.stdout)
    assert report["visible_devices"] == ["gpu-2"]
    assert set(report) >= {"device_nodes", "env", "nvml", "visible_devices"}


@pytest.mark.parametrize(
    ("files", "drivers"),
    [
        ({"sys/module/nvidia/version": "570.124.06\n"}, {"nvidia": "570.124.06"}),
        (
            {
                "proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  "
                "550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.3.0\n"
            },
            {"nvidia": "550.54.15"},
        ),
        (
            {
                "proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX Open Kernel Module for "
                "x86_64  575.51.03  Release Build  (dvs-builder@U16-I3-B13-4-3)\n"
            },
            {"nvidia": "575.51.03"},
        ),
        ({"sys/module/amdgpu/version": "6.10.5\n"}, {"amdgpu": "6.10.5"}),
        ({"sys/module/nvidia/version": ""}, {}),
        ({}, {}),
    ],
)
def test_driver_versions_from_sysfs_and_proc(
    tmp_path: Path, files: dict[str, str], drivers: dict[str, str]
) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    report = devices.report(environ={"KAIC_AGENT_ROOT": str(tmp_path)}, read_nvml=no_nvml)
    assert report["drivers"] == drivers


NO_PID_NAMESPACE = os.geteuid() != 0 or shutil.which("unshare") is None


@pytest.mark.skipif(NO_PID_NAMESPACE, reason="a new PID namespace needs root and unshare")
def test_the_agent_as_a_containers_first_process_stops_on_sigterm() -> None:
    """PID 1 of a PID namespace gets no default action for SIGTERM: without a handler, the
    kubelet deleting a probe pod would wait out the grace period and then kill it."""
    cmd = ["unshare", "--pid", "--fork", "--kill-child", sys.executable, "-m", "conformance.agent",
           "devices", "--hold", "60"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["hostname"]  # running, holding
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        os.kill(int(children[0]), signal.SIGTERM)  # the agent, PID 1 inside
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()  # unshare's --kill-child takes the agent with it
        proc.wait()
        proc.stdout.close()
