"""Volumes of the pods the sandbox's runtime runs: what the kubelet would mount into a container.

Secret and ConfigMap volumes are written once, when the pod starts (keys as files, `items`
honoured, no later updates); emptyDir volumes are empty folders of the pod. They are mounted at
their `mountPath` inside a root of the container's own: a tmpfs that holds the host's top-level
folders (bind-mounted) plus the mount points, entered with chroot, so that a container can have
`/certs` without the host getting one. Mount points under a host folder that does not already have
them are skipped with a message: creating them would change the host."""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

Obj = dict[str, Any]
SOURCES = ("secret", "configMap", "emptyDir")


class Reader(Protocol):
    def __call__(self, kind: str, namespace: str, name: str) -> Obj | None: ...


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str  # absolute path inside the container
    read_only: bool


class MissingSource(Exception):
    """A Secret or ConfigMap a volume needs does not exist (yet): the kubelet would wait."""


def _files(volume: Obj, data: dict[str, bytes]) -> dict[str, bytes]:
    items = volume.get("items")
    if not items:
        return data
    return {item["path"]: data[item["key"]] for item in items if item["key"] in data}


def _data(kind: str, obj: Obj) -> dict[str, bytes]:
    if kind == "Secret":
        return {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
    found = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    found |= {k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()}
    return found


def materialize(read: Reader, pod: Obj, workdir: Path) -> dict[str, Path]:
    """Volume name -> its folder on the host, for the volume kinds this runtime knows."""
    namespace = pod["metadata"]["namespace"]
    folders: dict[str, Path] = {}
    for volume in pod["spec"].get("volumes") or []:
        kind = next((k for k in SOURCES if k in volume), None)
        if kind is None:
            continue
        folder = workdir / "volumes" / volume["name"]
        folder.mkdir(parents=True, exist_ok=True)
        folders[volume["name"]] = folder
        if kind == "emptyDir":
            continue
        source = volume[kind]
        api_kind = "Secret" if kind == "secret" else "ConfigMap"
        name = source.get("secretName") or source.get("name", "")
        obj = read(api_kind, namespace, name)
        if obj is None:
            if source.get("optional"):
                continue
            raise MissingSource(f"{api_kind} {namespace}/{name} of volume {volume['name']}")
        mode = int(source.get("defaultMode") or 0o644)
        for path, content in _files(source, _data(api_kind, obj)).items():
            target = folder / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            target.chmod(mode)
    return folders


def mounts(container: Obj, folders: dict[str, Path]) -> list[Mount]:
    found = []
    for item in container.get("volumeMounts") or []:
        folder = folders.get(item["name"])
        if folder is None:
            continue
        source = folder / item["subPath"] if item.get("subPath") else folder
        found.append(Mount(source, item["mountPath"], bool(item.get("readOnly"))))
    return found


def placeable(target: str) -> bool:
    """A mount point the container's root can have without creating anything on the host:
    one that exists on the host, or one whose top-level folder the host lacks."""
    path = PurePosixPath(target)
    return Path(path).exists() or not Path("/", path.parts[1]).exists()


def root_steps(root: Path, container_mounts: list[Mount]) -> list[str]:
    """Shell steps that build the container's root at `root` (run in a private mount
    namespace): the host's top level, then each mount."""
    r = shlex.quote(str(root))
    steps = [
        f"mount -t tmpfs kaic-root {r}",
        "for e in /*; do n=${e#/}; "
        f'if [ -L "$e" ]; then ln -s "$(readlink "$e")" {r}/"$n"; '
        f'elif [ -d "$e" ]; then mkdir {r}/"$n" && mount --rbind "$e" {r}/"$n"; '
        f'elif [ -f "$e" ]; then touch {r}/"$n" && mount --bind "$e" {r}/"$n"; fi; done',
    ]
    for mount in container_mounts:
        target = shlex.quote(f"{root}{mount.target}")
        source = shlex.quote(str(mount.source))
        create = f"mkdir -p {target}" if mount.source.is_dir() else (
            f"mkdir -p $(dirname {target}) && touch {target}")  # fmt: skip
        steps.append(f"{{ [ -e {target} ] || {{ {create}; }}; }} && "
                     f"mount --bind {source} {target}")  # fmt: skip
        if mount.read_only:
            steps.append(f"mount -o remount,bind,ro {target}")
    return steps
