"""Reading driver versions: what nodes advertise, what a pod read, and when they are equal."""

from __future__ import annotations

from conformance.checks import driver


def test_versions_compare_by_number() -> None:
    assert driver.same_version("570.124.06", "570.124.6")
    assert not driver.same_version("570.124.06", "570.124.7")
    assert not driver.same_version("570.124", "570.124.6")


def test_label_versions() -> None:
    assert driver._label_version({"nvidia.com/cuda.driver-version.full": "570.124.06"}) == (
        "570.124.06",
        "label nvidia.com/cuda.driver-version.full",
    )
    split = {"nvidia.com/cuda.driver.major": "550", "nvidia.com/cuda.driver.minor": "54",
             "nvidia.com/cuda.driver.rev": "15"}  # fmt: skip
    assert driver._label_version(split)[0] == "550.54.15"
    assert driver._label_version({"amd.com/gpu.driver-version": "6.10.5"})[0] == "6.10.5"
    assert driver._label_version({"nvidia.com/cuda.driver.major": "550"}) == ("", "")


def test_pod_version_prefers_nvml() -> None:
    nvml = {"available": True, "driver_version": "570.124.06"}
    assert driver.pod_driver_version({"nvml": nvml, "drivers": {"nvidia": "1.2.3"}}) == (
        "570.124.06",
        "NVML",
    )
    assert (
        driver.pod_driver_version({"nvml": {"available": False}, "drivers": {"amdgpu": "6.1"}})[0]
        == "6.1"
    )
    assert driver.pod_driver_version({"nvml": {"available": False}, "drivers": {}}) == ("", "")


def test_probe_nodes_cover_every_advertised_version_first() -> None:
    entries = [
        driver.Advertised(f"n{i}", "570.1.1" if i else "535.1.1", "pool", "label") for i in range(6)
    ]
    picked = driver._probe_nodes(entries)
    assert len(picked) == driver.MAX_PROBED_NODES
    assert {e.version for e in picked[:2]} == {"535.1.1", "570.1.1"}
