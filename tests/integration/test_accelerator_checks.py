"""The accelerator checks pass on the sandbox and fail, naming the objects, when the capability
is removed or broken."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conformance import sandbox as sbx
from conformance.cli import main
from tests.integration.conftest import BARE, broken

pytestmark = pytest.mark.sandbox


# The sandbox's controllers react within a second: 5 s is plenty to see what must not happen.
OBSERVE = ("--observe-window", "5")


def run(box: Any, out: Path, *args: str, profile: str = "cncf-ai-v1.35") -> dict[str, Any]:
    main(["run", "--kubeconfig", str(box.kubeconfig), "--profile", profile,
          "--output", str(out), *OBSERVE, *args])  # fmt: skip
    data: dict[str, Any] = json.loads((out / "results.json").read_text())
    return {c["id"]: c for r in data["requirements"] for c in r["checks"]}


def statuses(checks: dict[str, Any]) -> dict[str, str]:
    return {k: v["status"] for k, v in checks.items()}


DRA = [
    "dra.api-served", "dra.class-matches-devices", "dra.claim-allocated", "dra.claim-two-devices",
    "dra.cel-selector", "dra.unsatisfiable-pending", "dra.claim-released",
]  # fmt: skip
SECURE = [
    "secure-access.no-request-no-device", "secure-access.only-claiming-container",
    "secure-access.disjoint-devices", "secure-access.count-matches",
]  # fmt: skip
GPU = [
    "gpu.resource-advertised", "gpu.pod-lands-on-gpu-node", "gpu.oversized-pending",
    "gpu.no-oversubscription", "gpu.taint-respected",
]  # fmt: skip


def test_dra_and_secure_access_pass_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "dra.*", "--check", "secure-access.*")
    assert statuses(checks) == dict.fromkeys(DRA + SECURE, "passed")
    allocated = checks["dra.claim-allocated"]["evidence"]["observed"]
    assert allocated["allocated"][0]["driver"] == "gpu.example.com"
    assert allocated["seen"] == [allocated["allocated"][0]["device"]]


@pytest.mark.parametrize("mode", ["dra", "device-plugin"])
def test_secure_access_in_each_allocation_mode(sandbox: Any, tmp_path: Path, mode: str) -> None:
    checks = run(sandbox, tmp_path, "--check", "secure-access.*", "--allocation-mode", mode)
    assert statuses(checks) == dict.fromkeys(SECURE, "passed")
    observed = checks["secure-access.no-request-no-device"]["evidence"]["observed"]
    assert mode.replace("-", " ") in observed["mode"].lower().replace("-", " ")
    coverage = observed["coverage"]
    assert len(coverage["probed"]) == coverage["accelerator_nodes"] >= 2  # every node, not one


def test_gpu_scheduling_passes_on_the_sandbox(sandbox: Any, tmp_path: Path) -> None:
    checks = run(sandbox, tmp_path, "--check", "gpu.*", profile="batch")
    assert statuses(checks) == dict.fromkeys(GPU, "passed")
    assert (
        "Insufficient nvidia.com/gpu"
        in checks["gpu.oversized-pending"]["evidence"]["observed"]["scheduler_message"]
    )


def test_a_class_that_selects_no_device_fails_at_once(sandbox: Any, tmp_path: Path) -> None:
    """A DeviceClass named for the driver whose selector matches none of its devices: the
    claim is never allocated, and the check says why as soon as that is final."""
    with broken(sandbox, "dra-class-selects-nothing") as box:
        checks = run(box, tmp_path, "--check", "dra.class-matches-devices")
    got = checks["dra.class-matches-devices"]
    assert got["status"] == "failed"
    message = got["message"]
    assert message.startswith("expected 1 ResourceClaim(s) of Pod/")
    assert "with every device of gpu.example.com free, so it stays so" in message
    assert "PodScheduled=False [Unschedulable:" in message
    assert "not allocated" in message
    assert "the DeviceClass's selectors against the driver's devices" in message
    assert got["duration_s"] < 60  # not the whole 120 s timeout


def test_untainted_gpu_nodes_fail_taint_respected(sandbox: Any, tmp_path: Path) -> None:
    with broken(sandbox, "gpu-nodes-untainted") as box:
        checks = run(box, tmp_path, "--check", "gpu.taint-respected", profile="batch")
    got = checks["gpu.taint-respected"]
    assert got["status"] == "failed"
    assert got["message"].startswith(
        "expected the GPU nodes to carry a NoSchedule taint (e.g. nvidia.com/gpu)"
    )
    assert "nodes with nvidia.com/gpu has one" in got["message"]


def test_a_scheduler_that_skips_resource_fit_fails_gpu_scheduling(
    sandbox: Any, tmp_path: Path
) -> None:
    """The scheduler restarted with NodeResourcesFit's filter disabled places pods wherever
    (gpu.pod-lands-on-gpu-node then fails only when it picks a node without GPUs: not asserted)."""
    with broken(sandbox, "scheduler-ignores-resource-fit") as box:
        checks = run(box, tmp_path, "--check", "gpu.oversized-pending",
                     "--check", "gpu.no-oversubscription", profile="batch")  # fmt: skip
    assert statuses(checks) == {"gpu.oversized-pending": "failed",
                                "gpu.no-oversubscription": "failed"}  # fmt: skip
    oversized = checks["gpu.oversized-pending"]["message"]
    assert "(nvidia.com/gpu: 5, more than any node) to stay Pending" in oversized
    assert "; observed scheduled on " in oversized
    assert "the NodeResourcesFit filter plugin" in oversized
    shared = checks["gpu.no-oversubscription"]["message"]
    assert "asks for 6 nvidia.com/gpu on gpu-dp-" in shared
    assert "which has 4; observed both scheduled on gpu-dp-" in shared


def test_gpus_all_unhealthy_fail_resource_advertised(sandbox: Any, tmp_path: Path) -> None:
    """nvidia.com/gpu listed in every GPU node's capacity, 0 of it allocatable."""
    with broken(sandbox, "device-plugin-unhealthy") as box:
        checks = run(box, tmp_path, "--check", "gpu.resource-advertised", profile="batch")
    got = checks["gpu.resource-advertised"]
    assert got["status"] == "failed"
    assert got["message"].startswith(
        "expected at least one node with nvidia.com/gpu allocatable; observed nvidia.com/gpu is 0 "
        "allocatable on every node that lists it"
    )
    assert "Capacity vs Allocatable" in got["message"]


@pytest.mark.box(without=BARE)
def test_without_dra_driver_the_dra_checks_fail(box: sbx.Sandbox, tmp_path: Path) -> None:
    checks = run(box, tmp_path, "--check", "dra.*", "--check", "secure-access.*")
    assert checks["dra.api-served"]["status"] == "passed"  # the API is there, the devices not
    for check_id in DRA[1:]:
        assert checks[check_id]["status"] == "failed", check_id
        assert "0 ResourceSlice(s)" in checks[check_id]["message"]
    # auto mode falls back to the device plugin, which still works
    assert {checks[c]["status"] for c in SECURE} == {"passed"}


def test_a_device_leak_fails_secure_access(sandbox: sbx.Sandbox, tmp_path: Path) -> None:
    with broken(sandbox, "gpu-visible-without-request") as box:
        found = {
            mode: run(box, tmp_path / mode, "--check", "secure-access.*", "--allocation-mode", mode)
            for mode in ("dra", "device-plugin")
        }
    for mode, checks in found.items():
        leak = checks["secure-access.no-request-no-device"]
        assert leak["status"] == "failed", mode
        assert "/no-request-0 (no accelerator requested)" in leak["message"]
        assert checks["secure-access.only-claiming-container"]["status"] == "failed"
        assert (
            "container other of Pod/" in checks["secure-access.only-claiming-container"]["message"]
        )


def test_gpus_that_never_reach_the_pod_fail_secure_access(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    with broken(sandbox, "device-plugin-no-devices") as box:
        checks = run(box, tmp_path, "--check", "secure-access.*", "--allocation-mode",
                     "device-plugin")  # fmt: skip
    assert checks["secure-access.count-matches"]["status"] == "failed"
    assert "observed devices []" in checks["secure-access.count-matches"]["message"]
    assert checks["secure-access.disjoint-devices"]["status"] == "failed"
    assert checks["secure-access.no-request-no-device"]["status"] == "passed"


def test_a_plugin_that_hands_one_gpu_to_two_pods_fails_disjoint_devices(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    with broken(sandbox, "device-plugin-shares-devices") as box:
        checks = run(box, tmp_path, "--check", "secure-access.*", "--allocation-mode",
                     "device-plugin")  # fmt: skip
    disjoint = checks["secure-access.disjoint-devices"]
    assert disjoint["status"] == "failed"
    assert "to see one device each, and different ones" in disjoint["message"]
    seen = disjoint["evidence"]["observed"]["seen"]
    assert seen["first"] == seen["second"]
    assert len(seen["first"]) == 1
    # a pod alone still gets what it asked for
    assert checks["secure-access.count-matches"]["status"] == "passed"


DRIVER = ["driver.version-advertised", "driver.version-matches-pod"]


@pytest.mark.parametrize("mode", ["dra", "device-plugin"])
def test_driver_sharing_and_vgpu_on_the_sandbox(sandbox: Any, tmp_path: Path, mode: str) -> None:
    checks = run(sandbox, tmp_path, "--check", "driver.*", "--check", "sharing.*",
                 "--check", "virtualized.*", "--allocation-mode", mode)  # fmt: skip
    assert statuses(checks) == {
        **dict.fromkeys([*DRIVER, "sharing.time-slicing"], "passed"),
        "virtualized.vgpu-exposed": "skipped",
    }
    nodes = checks["driver.version-matches-pod"]["evidence"]["observed"]["nodes"]
    assert len(nodes) >= 2
    for seen in nodes.values():
        assert (seen["advertised"], seen["pod"]) == ("570.124.6", "570.124.06")
        assert seen["read_from"] == "the nvidia kernel module"
    shared = checks["sharing.time-slicing"]["evidence"]["observed"]
    assert shared["node"] == "gpu-ts-0"
    assert len(shared["seen"]) == 2
    assert shared["physical_gpus_used"] == 1
    assert "nvidia.com/vgpu.present" in checks["virtualized.vgpu-exposed"]["message"]


def test_driver_and_sharing_faults_fail_the_right_checks(
    sandbox: sbx.Sandbox, tmp_path: Path
) -> None:
    faults = ("driver-version-mismatch", "driver-version-skew", "time-slicing-no-replicas")
    with broken(sandbox, *faults) as box:
        checks = run(box, tmp_path, "--check", "driver.*", "--check", "sharing.*")
    assert statuses(checks) == dict.fromkeys([*DRIVER, "sharing.time-slicing"], "failed")
    skew = checks["driver.version-advertised"]["message"]
    assert "to run one driver version" in skew
    assert "535.183.1 on gpu-dra-1; 570.124.6 on gpu-dra-0" in skew
    mismatch = checks["driver.version-matches-pod"]["message"]
    assert "Node/gpu-dra-0 advertises 570.124.6" in mismatch
    assert "reads 535.183.01 from the nvidia kernel module" in mismatch
    assert "gpu-dra-1 advertises" not in mismatch  # skewed, but honest about it
    sharing = checks["sharing.time-slicing"]["message"]
    assert "to run together on gpu-ts-0" in sharing
    assert "Insufficient nvidia.com/gpu" in sharing
