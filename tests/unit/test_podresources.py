"""The kubelet's PodResources API as the sandbox's exporter reads it on a real node: protobuf's
wire format decoded by hand, over a real gRPC server on a unix socket."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest

from conformance.checks import _exporters as exp
from conformance.sandbox import gpu_exporter, podresources, topology

NODE = "gpu-ts-0"
UUID = topology.gpu_uuid(NODE, 0)


def _varint(value: int) -> bytes:
    out = b""
    while True:
        byte, value = value & 0x7F, value >> 7
        out += bytes([byte | (0x80 if value else 0)])
        if not value:
            return out


def field(number: int, value: bytes | str | int) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    raw = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(raw)) + raw


def container(name: str, resource: str, *ids: str) -> bytes:
    devices = field(1, resource) + b"".join(field(2, i) for i in ids)
    # cpu_ids (3) and a topology (3 inside devices) are skipped, as any unknown field
    return field(1, name) + field(2, devices + field(3, field(1, field(1, 0)))) + field(3, 7)


def pod(name: str, namespace: str, *containers: bytes) -> bytes:
    body = field(1, name) + field(2, namespace) + b"".join(field(3, c) for c in containers)
    return field(1, body)


LISTED = (
    pod("burner", "ns", container("agent", "nvidia.com/gpu", f"{UUID}::0", f"{UUID}::2"))
    + pod("other", "ns", container("sidecar", "example.com/fpga", "fpga-0"))
    + pod("split", "team", container("a", "nvidia.com/gpu", f"{UUID}::1"),
          container("idle", "nvidia.com/gpu"))
)  # fmt: skip


def test_a_list_reply_names_the_containers_holding_devices_of_the_resource() -> None:
    assert podresources.parse_list(LISTED, "nvidia.com/gpu") == [
        {"pod": "burner", "namespace": "ns", "container": "agent",
         "devices": [f"{UUID}::0", f"{UUID}::2"]},
        {"pod": "split", "namespace": "team", "container": "a", "devices": [f"{UUID}::1"]},
    ]  # fmt: skip


def test_a_truncated_reply_is_an_error_not_a_wrong_answer() -> None:
    with pytest.raises(ValueError, match="truncated"):
        podresources.parse_list(LISTED[:-1] + b"\x80", "nvidia.com/gpu")


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[str]:
    """A gRPC server answering PodResourcesLister/List as a kubelet would."""
    socket = str(tmp_path / "kubelet.sock")
    handler = grpc.method_handlers_generic_handler("v1.PodResourcesLister", {
        "List": grpc.unary_unary_rpc_method_handler(
            lambda request, context: LISTED, request_deserializer=bytes,
            response_serializer=bytes),
    })  # fmt: skip
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    yield socket
    server.stop(None)


def test_the_exporter_on_a_real_node_attributes_time_sliced_replicas_to_their_gpu(
    kubelet: str, tmp_path: Path
) -> None:
    load = tmp_path / "load"
    load.mkdir()
    (load / UUID).touch()
    source = gpu_exporter.kubelet_source(kubelet, load)
    devices = exp.parse(gpu_exporter.metrics(source, NODE), "x")
    held = devices[(NODE, UUID)]
    assert held.pods == {("ns", "burner"), ("team", "split")}
    assert held.utilization == gpu_exporter.LOADED_UTIL
    old = time.time() - 2 * gpu_exporter.LOAD_FRESH_S
    os.utime(load / UUID, (old, old))  # a stale mark: the burn ended
    assert exp.parse(gpu_exporter.metrics(source, NODE), "x")[(NODE, UUID)].utilization == 0
