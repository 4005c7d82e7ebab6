"""Each pod's own network namespace, as a CNI plugin would make it, inside the sandbox's namespace.

A pause process (`unshare --net sleep infinity`, the pod's sandbox container) holds the pod's
namespace; a veth pair joins it to the sandbox's namespace (where the runtime runs). Inside:
`lo`, and `eth0` with the pod IP and a default route via a link-local gateway (169.254.1.1), which
the sandbox side answers by proxy ARP, as Calico does. In the sandbox's namespace a /32 route in
the `local` table sends the pod IP to its veth (the pod range stays local on `lo` for addresses no
running pod holds). So pods no longer share ports: two Envoys, or Envoy Gateway and its
extension, each bind `0.0.0.0` in their own namespace, and kube-proxy's rules in the sandbox's
namespace translate Service addresses for traffic from pods (prerouting) as on a node."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

GATEWAY = "169.254.1.1"
# What pods reach the API server at: the gateway address, local in the sandbox's namespace.
API_HOST = GATEWAY


class PodNetworkError(RuntimeError):
    pass


@dataclass
class PodNetwork:
    pause: subprocess.Popen[bytes]
    host_link: str
    pod_ip: str

    @property
    def path(self) -> str:
        return f"/proc/{self.pause.pid}/ns/net"

    def delete(self) -> None:
        """Ending the pause process ends the namespace, its veth pair and the /32 route."""
        if self.pause.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pause.pid, signal.SIGKILL)
        self.pause.wait()


def _ip(*args: str, netns: str | None = None) -> None:
    cmd = ["ip", *args] if netns is None else ["nsenter", f"--net={netns}", "--", "ip", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PodNetworkError(f"`{' '.join(cmd)}`: {done.stderr.strip()}")


def _own_namespace(pid: int) -> bool:
    try:
        return os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    except OSError:
        return False


def create(pod_uid: str, pod_ip: str) -> PodNetwork:
    pause = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"],
                             start_new_session=True, stdin=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 5
    while not _own_namespace(pause.pid):  # unshare has not created it yet: a few milliseconds
        if pause.poll() is not None or time.monotonic() > deadline:
            raise PodNetworkError(f"no network namespace for pod {pod_uid}")
        time.sleep(0.005)
    network = PodNetwork(pause, f"kp{pod_uid.replace('-', '')[:12]}", pod_ip)
    try:
        _configure(network)
    except PodNetworkError:
        network.delete()
        raise
    return network


def _configure(network: PodNetwork) -> None:
    host, netns = network.host_link, network.path
    _ip("link", "add", host, "type", "veth", "peer", "name", "eth0", "netns",
        str(network.pause.pid))  # fmt: skip
    _ip("addr", "add", f"{GATEWAY}/32", "dev", host)
    Path(f"/proc/sys/net/ipv4/conf/{host}/proxy_arp").write_text("1\n")
    _ip("link", "set", host, "up")
    # replace: a new pod may get the IP of one whose namespace is still being torn down
    _ip("route", "replace", f"{network.pod_ip}/32", "dev", host, "table", "local")
    _ip("link", "set", "lo", "up", netns=netns)
    _ip("addr", "add", f"{network.pod_ip}/32", "dev", "eth0", netns=netns)
    _ip("link", "set", "eth0", "up", netns=netns)
    _ip("route", "add", GATEWAY, "dev", "eth0", "scope", "link", netns=netns)
    _ip("route", "add", "default", "via", GATEWAY, "dev", "eth0", netns=netns)


def enter(network: PodNetwork | None, command: list[str]) -> list[str]:
    if network is None:
        return command
    return ["nsenter", f"--net={network.path}", "--", *command]
