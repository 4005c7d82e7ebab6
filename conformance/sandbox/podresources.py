"""The kubelet's PodResources API (v1: gRPC on a unix socket), read as dcgm-exporter reads it:
which container holds which device. The messages are decoded from protobuf's wire format here
(five fields of `k8s.io/kubelet/pkg/apis/podresources/v1/api.proto`), so no generated code."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
LIST = "/v1.PodResourcesLister/List"
Obj = dict[str, Any]
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if i >= len(data):
            raise ValueError("protobuf: truncated varint")
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i, shift = i + 1, shift + 7
        if not byte & 0x80:
            return value, i


def fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    """(field number, value) of one message: ints for varints, bytes for the rest."""
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        wire = key & 7
        value: int | bytes
        if wire == _VARINT:
            value, i = _varint(data, i)
        elif wire == _LEN:
            size, i = _varint(data, i)
            value, i = data[i : i + size], i + size
        elif wire in (_I64, _I32):
            size = 8 if wire == _I64 else 4
            value, i = data[i : i + size], i + size
        else:
            raise ValueError(f"protobuf: wire type {wire} is not supported")
        yield key >> 3, value


def _strings(data: bytes, number: int) -> list[str]:
    return [v.decode() for n, v in fields(data) if n == number and isinstance(v, bytes)]


def _messages(data: bytes, number: int) -> list[bytes]:
    return [v for n, v in fields(data) if n == number and isinstance(v, bytes)]


def parse_list(data: bytes, resource: str) -> list[Obj]:
    """ListPodResourcesResponse -> one entry per container holding devices of `resource`:
    {"pod", "namespace", "container", "devices": [device ids]}."""
    found: list[Obj] = []
    for pod in _messages(data, 1):  # pod_resources
        name, namespace = (_strings(pod, 1) or [""])[0], (_strings(pod, 2) or [""])[0]
        for container in _messages(pod, 3):  # containers
            ids = [
                device_id
                for devices in _messages(container, 2)  # devices: ContainerDevices
                if _strings(devices, 1) == [resource]
                for device_id in _strings(devices, 2)
            ]
            if ids:
                found.append({"pod": name, "namespace": namespace,
                              "container": (_strings(container, 1) or [""])[0],
                              "devices": ids})  # fmt: skip
    return found


def list_devices(socket: str, resource: str, timeout_s: float = 5) -> list[Obj]:
    """Ask the kubelet which containers hold devices of `resource`."""
    import grpc  # only the exporter on a real node needs it

    with grpc.insecure_channel(f"unix://{socket}") as channel:
        call = channel.unary_unary(LIST, request_serializer=bytes, response_deserializer=bytes)
        reply: bytes = call(b"", timeout=timeout_s)
    return parse_list(reply, resource)
