"""Reading accelerator exporters' text format, whichever vendor and label spelling."""

from __future__ import annotations

import json
from pathlib import Path

from conformance.checks import _exporters as exp
from conformance.sandbox import gpu_exporter, topology

DCGM_OLD = """\
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="n1"} 42
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",device="nvidia1",modelName="NVIDIA H100 80GB HBM3",Hostname="n1",container="c",namespace="ns",pod="p"} 7
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",Hostname="n1"} 1024
DCGM_FI_DEV_FB_USED{gpu="1",UUID="GPU-b",Hostname="n1",container="c",namespace="ns",pod="p"} 2048
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-a",Hostname="n1"} 80000
# TYPE DCGM_FI_PROF_NVLINK_TX_BYTES gauge
DCGM_FI_PROF_NVLINK_TX_BYTES{gpu="0",UUID="GPU-a",Hostname="n1"} 123
"""  # noqa: E501

DCGM_NEW = DCGM_OLD.replace('Hostname="', 'hostname="')

AMD = """\
# TYPE gpu_gfx_activity gauge
gpu_gfx_activity{gpu_id="0",card_model="MI300X",hostname="n2"} 55
# TYPE gpu_used_vram gauge
gpu_used_vram{gpu_id="0",card_model="MI300X",hostname="n2",pod="p",namespace="ns"} 4096
# TYPE gpu_total_vram gauge
gpu_total_vram{gpu_id="0",card_model="MI300X",hostname="n2"} 196608
# TYPE gpu_junction_temperature gauge
gpu_junction_temperature{gpu_id="0",hostname="n2"} 51
# TYPE gpu_package_power gauge
gpu_package_power{gpu_id="0",hostname="n2"} 300
"""


def test_dcgm_either_hostname_spelling() -> None:
    for text in (DCGM_OLD, DCGM_NEW):
        devices = exp.parse(text, "fallback")
        assert set(devices) == {("n1", "GPU-a"), ("n1", "GPU-b")}
        a, b = devices[("n1", "GPU-a")], devices[("n1", "GPU-b")]
        assert (a.utilization, a.memory_used) == (42, 1024)
        assert a.memory_other == {"DCGM_FI_DEV_FB_FREE": 80000}
        assert a.interconnect == {"DCGM_FI_PROF_NVLINK_TX_BYTES": 123}
        assert a.pods == set()
        assert b.pods == {("ns", "p")}


def test_amd_names_and_labels() -> None:
    devices = exp.parse(AMD, "fallback")
    device = devices[("n2", "0")]
    assert device.utilization == 55
    assert device.memory_used == 4096
    assert device.memory_other == {"gpu_total_vram": 196608}
    assert (device.temperature, device.power) == (51, 300)
    assert device.pods == {("ns", "p")}


def test_a_series_without_node_label_belongs_to_the_exporters_node() -> None:
    text = 'DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-z"} 3\n'
    assert set(exp.parse(text, "node-7")) == {("node-7", "GPU-z")}


def source(directory: Path, node: str) -> gpu_exporter.Source:
    return gpu_exporter.probe_runtime_source(directory, node)


def test_the_emulated_exporter_speaks_dcgm(tmp_path: Path) -> None:
    """The sandbox's stand-in: one series per physical GPU of the node, attribution from the
    runtime's PodResources record, utilization while `burn` marks a device."""
    node = "gpu-dp-0"
    uuid = topology.gpu_uuid(node, 1)
    (tmp_path / "podresources").mkdir()
    (tmp_path / "podresources" / f"{node}.json").write_text(json.dumps(
        [{"pod": "p", "namespace": "ns", "container": "c", "devices": [uuid]}]))  # fmt: skip
    (tmp_path / "gpu-load" / node).mkdir(parents=True)
    (tmp_path / "gpu-load" / node / uuid).touch()
    devices = exp.parse(gpu_exporter.metrics(source(tmp_path, node), node), "x")
    assert len(devices) == 4
    held = devices[(node, uuid)]
    assert held.pods == {("ns", "p")}
    assert held.utilization == gpu_exporter.LOADED_UTIL
    assert (held.memory_used or 0) > 0
    idle = devices[(node, topology.gpu_uuid(node, 0))]
    assert (idle.utilization, idle.memory_used, idle.pods) == (0, 0, set())
    bare = exp.parse(gpu_exporter.metrics(source(tmp_path, node), node, with_memory=False), "x")
    assert all(d.memory_used is None and d.utilization is not None for d in bare.values())


def test_the_exporter_faults_drop_pod_labels_or_freeze_utilization(tmp_path: Path) -> None:
    node = "gpu-dp-0"
    uuid = topology.gpu_uuid(node, 1)
    (tmp_path / "podresources").mkdir()
    (tmp_path / "podresources" / f"{node}.json").write_text(json.dumps(
        [{"pod": "p", "namespace": "ns", "container": "c", "devices": [uuid]}]))  # fmt: skip
    mapped = exp.parse(gpu_exporter.metrics(source(tmp_path, node), node), "x")
    assert mapped[(node, uuid)].pods == {("ns", "p")}
    unmapped = exp.parse(gpu_exporter.metrics(source(tmp_path, node), node, pod_mapping=False), "x")
    assert all(d.pods == set() for d in unmapped.values())
    frozen = exp.parse(gpu_exporter.metrics(source(tmp_path, node), node, frozen=True), "x")
    assert {d.utilization for d in frozen.values()} == {gpu_exporter.LOADED_UTIL}
