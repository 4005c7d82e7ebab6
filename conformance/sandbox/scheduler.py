"""The sandbox's kube-scheduler runs from a configuration file (`D/kube-scheduler.yaml`), so that
a fault can change its profile as a platform's scheduler configuration would be changed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from conformance.sandbox import netns, processes

CONFIG = "kube-scheduler.yaml"
IGNORES_FIT = "scheduler-ignores-resource-fit"


def config(kubeconfig: Path, breaks: Sequence[str]) -> dict[str, Any]:
    profile: dict[str, Any] = {"schedulerName": "default-scheduler"}
    if IGNORES_FIT in breaks:
        # the filter that keeps a pod off nodes without the CPU, memory or GPUs it asks for
        profile["plugins"] = {"filter": {"disabled": [{"name": "NodeResourcesFit"}]}}
    return {
        "apiVersion": "kubescheduler.config.k8s.io/v1",
        "kind": "KubeSchedulerConfiguration",
        "clientConnection": {"kubeconfig": str(kubeconfig)},
        "leaderElection": {"leaderElect": False},
        "profiles": [profile],
    }


def write_config(directory: Path, kubeconfig: Path, breaks: Sequence[str]) -> Path:
    path = directory / CONFIG
    path.write_text(yaml.safe_dump(config(kubeconfig, breaks)))
    return path


def restart(directory: Path, kubeconfig: Path, pid: int, namespace: str | None,
            breaks: Sequence[str]) -> int:  # fmt: skip
    """Rewrite the configuration and restart the scheduler with the command it ran with (it
    reads its configuration only at start); return the new pid once it listens."""
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:-1]
    command = [a.decode() for a in argv]
    write_config(directory, kubeconfig, breaks)
    processes.stop([pid])
    logs = directory / "logs"
    new = processes.start("kube-scheduler", command, logs, netns=namespace)
    port = int(command[command.index("--secure-port") + 1])
    processes.wait_until("kube-scheduler",
                         lambda: netns.call(namespace, lambda: processes.listening(port)),
                         new, logs / "kube-scheduler.log", timeout_s=30)  # fmt: skip
    return new
