"""The sandbox's own network namespace: pod IPs that are real (not loopback) yet go nowhere.

Pods of a real cluster get addresses Kubernetes accepts everywhere: EndpointSlices, the API
server's pod and service proxy. Loopback addresses (127.0.0.0/8) are refused by both, so the
sandbox gives KWOK's pods a private range (POD_CIDR) and makes it local inside a network
namespace of its own, with nothing in it but `lo`. Every component runs in that namespace
(so the API server, the controllers and the probe processes reach pod IPs, and no packet can
leave the machine); the host sees one port: a forwarder from the host's 127.0.0.1 to the API server
inside, with the kubeconfig written for the host; components inside use one naming the inside port.

Needs root (CAP_SYS_ADMIN) and `unshare`, `nsenter`, `ip`; without them the sandbox falls back
to loopback pod IPs in the host's namespace (`available()` says which).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import selectors
import shutil
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

POD_CIDR = "10.244.0.0/16"
# KWOK's pods take the lower half; real nodes' pod ranges are /24s of the upper (real_nodes.py).
KWOK_POD_CIDR = "10.244.0.0/17"
# Service ClusterIPs: local in the namespace, so that connections to them reach the OUTPUT hook
# where kube-proxy's nftables rules translate them (and are refused where nothing does).
SERVICE_CIDR = "10.96.0.0/16"
LOOPBACK_POD_CIDR = "127.100.0.0/16"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")


def available() -> str | None:
    """None if the sandbox can have its own network namespace, else why not."""
    if os.environ.get("KAIC_SANDBOX_NETWORK", "") == "loopback":
        return "KAIC_SANDBOX_NETWORK=loopback"
    if os.geteuid() != 0:
        return "not root (a network namespace needs CAP_SYS_ADMIN)"
    missing = [tool for tool in ("unshare", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)}"
    return None


def holder_command() -> list[str]:
    """A process that owns the namespace: `lo` up, the pod range local, then it waits."""
    script = (f"ip link set lo up && ip addr add {POD_CIDR} dev lo && "
              f"ip route add local {SERVICE_CIDR} dev lo && "
              # it routes between the pods' own namespaces (see pod_network)
              "echo 1 > /proc/sys/net/ipv4/ip_forward && "
              "echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter && exec sleep infinity")  # fmt: skip
    return ["unshare", "--net", "--", "sh", "-c", script]


def path_of(holder_pid: int) -> str:
    return f"/proc/{holder_pid}/ns/net"


def wrap(cmd: Sequence[str], netns: str | None) -> list[str]:
    """`cmd` run inside the namespace (nsenter execs it: the pid stays the component's)."""
    return ["nsenter", f"--net={netns}", "--", *cmd] if netns else list(cmd)


def _setns(netns: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(netns, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({netns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call(netns: str | None, fn: Callable[[], T]) -> T:
    """Run `fn` in a thread that entered `netns` (a namespace is per thread), return its value.

    Sockets opened by `fn` stay in that namespace whichever thread uses them later.
    """
    if netns is None:
        return fn()
    result: list[T] = []
    error: list[BaseException] = []

    def target() -> None:
        try:
            _setns(netns)
            result.append(fn())
        except BaseException as exc:  # handed to the caller below
            error.append(exc)

    thread = threading.Thread(target=target, name="netns-call")
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


def bind_test(address: str) -> None:
    with socket.socket() as s:
        s.bind((address, 0))


# --- the forwarder: host 127.0.0.1:PORT -> namespace 127.0.0.1:PORT ------------------------------


def forward(netns: str, host_port: int, port: int) -> None:
    """Serve forever: accept on the host's 127.0.0.1:host_port, connect to 127.0.0.1:port inside
    the namespace."""
    listener = socket.create_server(("127.0.0.1", host_port))
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_relay, args=(conn, netns, port), daemon=True).start()


def _relay(conn: socket.socket, netns: str, port: int) -> None:
    try:
        upstream = call(netns, lambda: socket.create_connection(("127.0.0.1", port), timeout=5))
    except OSError:
        conn.close()
        return
    upstream.settimeout(None)
    with conn, upstream, selectors.DefaultSelector() as sel:
        sel.register(conn, selectors.EVENT_READ, upstream)
        sel.register(upstream, selectors.EVENT_READ, conn)
        while True:
            for key, _ in sel.select():
                source: socket.socket = key.fileobj  # type: ignore[assignment]
                target: socket.socket = key.data
                try:
                    data = source.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                try:
                    target.sendall(data)
                except OSError:
                    return


def forwarder_command(netns: str, host_port: int, port: int) -> list[str]:
    return [sys.executable, "-m", "conformance.sandbox.netns", netns, str(host_port), str(port)]


def main(argv: Sequence[str]) -> None:
    netns, host_port, port = argv
    if not Path(netns).exists():
        raise SystemExit(f"no network namespace at {netns}")
    forward(netns, int(host_port), int(port))


if __name__ == "__main__":
    main(sys.argv[1:])
