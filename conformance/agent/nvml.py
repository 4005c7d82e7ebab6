"""Reading NVIDIA GPUs through the NVIDIA management library (libnvidia-ml) with ctypes.

The driver mounts the library into containers that were given GPUs; without it (no NVIDIA GPU,
or none given to this container) `read()` says so instead of failing.
"""

from __future__ import annotations

import ctypes
from typing import Any

LIBRARY = "libnvidia-ml.so.1"
NVML_SUCCESS = 0
_BUFFER = 96  # NVML_DEVICE_UUID_V2_BUFFER_SIZE, NVML_DEVICE_NAME_V2_BUFFER_SIZE


class _Memory(ctypes.Structure):
    _fields_ = [
        ("total", ctypes.c_ulonglong),
        ("free", ctypes.c_ulonglong),
        ("used", ctypes.c_ulonglong),
    ]


class NvmlError(RuntimeError):
    pass


def cuda_version(encoded: int) -> str:
    """NVML encodes the CUDA driver version as 1000 * major + 10 * minor."""
    return f"{encoded // 1000}.{(encoded % 1000) // 10}"


class Nvml:
    def __init__(self, lib: Any) -> None:
        self.lib = lib

    def call(self, name: str, *args: Any) -> None:
        code = getattr(self.lib, name)(*args)
        if code != NVML_SUCCESS:
            message = self.lib.nvmlErrorString(code)
            text = ctypes.cast(message, ctypes.c_char_p).value if message else b""
            raise NvmlError(f"{name}: {(text or b'error %d' % code).decode()}")

    def string(self, name: str, *args: Any) -> str:
        buffer = ctypes.create_string_buffer(_BUFFER)
        self.call(name, *args, buffer, ctypes.c_uint(_BUFFER))
        return buffer.value.decode()

    def gpus(self) -> list[dict[str, Any]]:
        count = ctypes.c_uint()
        self.call("nvmlDeviceGetCount_v2", ctypes.byref(count))
        found = []
        for index in range(count.value):
            handle = ctypes.c_void_p()
            self.call("nvmlDeviceGetHandleByIndex_v2", ctypes.c_uint(index), ctypes.byref(handle))
            memory = _Memory()
            self.call("nvmlDeviceGetMemoryInfo", handle, ctypes.byref(memory))
            found.append({
                "index": index,
                "uuid": self.string("nvmlDeviceGetUUID", handle),
                "name": self.string("nvmlDeviceGetName", handle),
                "memory_total_mib": memory.total // 2**20,
                "memory_used_mib": memory.used // 2**20,
            })  # fmt: skip
        return found


def read(library: str = LIBRARY) -> dict[str, Any]:
    """{"available": bool, "driver_version", "cuda_driver_version", "gpus": [...]} or an error."""
    try:
        lib = ctypes.CDLL(library)
    except OSError as exc:
        return {"available": False, "error": f"{library} not loadable: {exc}"}
    lib.nvmlErrorString.restype = ctypes.c_void_p
    nvml = Nvml(lib)
    try:
        nvml.call("nvmlInit_v2")
    except NvmlError as exc:
        return {"available": False, "error": str(exc)}
    try:
        cuda = ctypes.c_int()
        nvml.call("nvmlSystemGetCudaDriverVersion_v2", ctypes.byref(cuda))
        return {
            "available": True,
            "driver_version": nvml.string("nvmlSystemGetDriverVersion"),
            "cuda_driver_version": cuda_version(cuda.value),
            "gpus": nvml.gpus(),
        }
    except NvmlError as exc:
        return {"available": False, "error": str(exc)}
    finally:
        lib.nvmlShutdown()
