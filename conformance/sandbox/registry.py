"""The real nodes' image registry: the CNCF Distribution registry, in the sandbox's network
namespace, where the nodes reach it at the gateway address (169.254.1.1). Its storage is
`<cache>/registry/`, content-addressed and kept across sandboxes, so an image is pushed once.

Images keep the names a cluster pulls them by: each node's containerd has a registry host
configuration (`certs.d/<registry>/hosts.toml`) that sends `ghcr.io`, `registry.k8s.io` and
`docker.io` to this registry, under a path named for the registry (`/v2/ghcr.io/...`), so that
`ghcr.io/kaic-dev/kaic-probe:0.1.0` is pulled from here as it is pulled from ghcr.io elsewhere.
Images are pushed from Docker image archives with Debian's skopeo."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import yaml

from conformance.errors import KaicError
from conformance.sandbox import netns, processes
from conformance.sandbox.pod_network import GATEWAY

MIRRORED = ("ghcr.io", "registry.k8s.io", "docker.io")
CONFIG = "registry.yml"
Record = Callable[[str, int], None]


def missing() -> str | None:
    if shutil.which("skopeo") is None:
        return "skopeo is missing (Debian's skopeo; `make setup` installs it)"
    return None


def start(directory: Path, namespace: str, bin_dir: Path, storage: Path, port: int,
          record: Record) -> None:  # fmt: skip
    storage.mkdir(parents=True, exist_ok=True)
    config = {"version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
              "storage": {"filesystem": {"rootdirectory": str(storage)}},
              "http": {"addr": f"0.0.0.0:{port}"}}  # fmt: skip
    (directory / CONFIG).write_text(yaml.safe_dump(config))
    logs = directory / "logs"
    pid = processes.start("registry", [str(bin_dir / "registry"), "serve",
                                       str(directory / CONFIG)], logs, netns=namespace)  # fmt: skip
    record("registry", pid)
    processes.wait_until("the image registry",
                         lambda: netns.call(namespace, lambda: processes.listening(port)),
                         pid, logs / "registry.log", timeout_s=20)  # fmt: skip


def port_of(directory: Path) -> int:
    config = yaml.safe_load((directory / CONFIG).read_text())
    return int(str(config["http"]["addr"]).rsplit(":", 1)[1])


def path_of(image: str) -> str:
    """`<registry>/<repository>:<tag>` as this registry stores it (Docker Hub's short names
    completed as containerd completes them)."""
    first, _, rest = image.partition("/")
    if "/" not in image:  # Docker Hub's official images
        first, rest = "docker.io", f"library/{image}"
    elif "." not in first and ":" not in first:  # no registry host: Docker Hub
        first, rest = "docker.io", image
    if first not in MIRRORED:
        raise KaicError(f"{image}: the sandbox's registry mirrors only {', '.join(MIRRORED)}")
    return f"{first}/{rest}"


def push(directory: Path, namespace: str, archive: Path, image: str) -> None:
    """Push a Docker image archive as `image` (skopeo skips the layers already there)."""
    target = f"docker://127.0.0.1:{port_of(directory)}/{path_of(image)}"
    cmd = netns.wrap(["skopeo", "--insecure-policy", "copy", "--quiet", "--dest-tls-verify=false",
                      f"docker-archive:{archive}", target], namespace)  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise KaicError(f"pushing {image} to the sandbox's registry: {done.stderr.strip()[-300:]}")


def hosts_toml(registry_host: str, port: int) -> str:
    """containerd's configuration for `registry_host`: pull from this registry only."""
    return (f'[host."http://{GATEWAY}:{port}/v2/{registry_host}"]\n'
            '  capabilities = ["pull", "resolve"]\n  override_path = true\n')  # fmt: skip


def write_hosts(certs_d: Path, port: int) -> None:
    for host in MIRRORED:
        (certs_d / host).mkdir(parents=True, exist_ok=True)
        (certs_d / host / "hosts.toml").write_text(hosts_toml(host, port))
