"""Container images for the real nodes, made here (nothing can be pulled) and pushed to the
sandbox's registry under the names a cluster pulls them by (registry.py).

An image is written as a Docker image archive (`manifest.json`, the config, one layer);
images are cached by content in `<cache>/images/`:

- `registry.k8s.io/pause:3.10.1`: Kubernetes' own pause.c (from the pinned k8s.io/kubernetes
  module), compiled static with gcc, as its build/pause Makefile does.
- `docker.io/library/busybox:1.35`: Debian's busybox-static, for probes that need a shell."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conformance.errors import KaicError

PAUSE_TAG = "3.10.1"
PAUSE_IMAGE = f"registry.k8s.io/pause:{PAUSE_TAG}"
BUSYBOX_IMAGE = "docker.io/library/busybox:1.35"
BUSYBOX = Path("/bin/busybox")  # Debian's busybox-static (the Makefile installs it)
BUSYBOX_APPLETS = ("sh", "cat", "ls", "sleep", "test", "touch", "id", "echo")
NOBODY = "65535"  # the pause image's user


@dataclass(frozen=True)
class File:
    path: str  # inside the image, absolute
    data: bytes = b""
    mode: int = 0o755
    link: str = ""  # a symlink to this target instead of a file


def layer(files: list[File]) -> bytes:
    """One uncompressed layer: the files, their parent folders first, in a stable order (the
    same files give the same digest)."""
    folders: set[str] = set()
    for f in files:
        parts = f.path.strip("/").split("/")[:-1]
        folders.update("/".join(parts[: i + 1]) for i in range(len(parts)))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in sorted(folders):
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for f in sorted(files, key=lambda f: f.path):
            info = tarfile.TarInfo(f.path.strip("/"))
            if f.link:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, f.link, 0o777
                tar.addfile(info)
            else:
                info.size, info.mode = len(f.data), f.mode
                tar.addfile(info, io.BytesIO(f.data))
    return out.getvalue()


def archive(name: str, files: list[File], entrypoint: list[str], user: str = "0") -> bytes:
    """A Docker image archive of one image `name` (one layer)."""
    blob = layer(files)
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint, "User": user, "Env": ["PATH=/bin:/usr/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{hashlib.sha256(blob).hexdigest()}"]},
    }
    manifest = [{"Config": "config.json", "RepoTags": [name], "Layers": ["layer.tar"]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        for member, data in (("layer.tar", blob), ("config.json", json.dumps(config).encode()),
                             ("manifest.json", json.dumps(manifest).encode())):  # fmt: skip
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def pause_binary(pause_c: Path) -> bytes:
    gcc = shutil.which("gcc")
    if gcc is None:
        raise KaicError("the real nodes' pause image is compiled with gcc: install gcc")
    with tempfile.TemporaryDirectory() as work:
        out = Path(work) / "pause"
        cmd = [gcc, "-Os", "-static", "-o", str(out), f"-DVERSION=v{PAUSE_TAG}", str(pause_c)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise KaicError(f"compiling {pause_c} failed: {done.stderr.strip()[-300:]}")
        return out.read_bytes()


def busybox_files() -> list[File]:
    return [File("/bin/busybox", BUSYBOX.read_bytes()),
            *(File(f"/bin/{a}", link="busybox") for a in BUSYBOX_APPLETS)]  # fmt: skip


def node_images(cache: Path) -> list[tuple[str, Path]]:
    """The images every real node uses (name, archive), built once per content."""
    folder = cache / "images"
    folder.mkdir(parents=True, exist_ok=True)
    pause_c = cache / "data" / "kubernetes" / "build" / "pause" / "linux" / "pause.c"
    if not pause_c.is_file():
        raise KaicError(f"{pause_c} is missing: rebuild with `kaic sandbox build`")
    if not BUSYBOX.is_file():
        raise KaicError(f"real nodes need {BUSYBOX} (Debian's busybox-static; `make setup`)")

    def pause() -> bytes:
        return archive(PAUSE_IMAGE, [File("/pause", pause_binary(pause_c))], ["/pause"], NOBODY)

    def busybox() -> bytes:
        return archive(BUSYBOX_IMAGE, busybox_files(), ["/bin/sh"])

    return [
        (PAUSE_IMAGE, _cached(folder, PAUSE_IMAGE, pause, pause_c.read_bytes())),
        (BUSYBOX_IMAGE, _cached(folder, BUSYBOX_IMAGE, busybox, BUSYBOX.read_bytes())),
    ]


def _cached(folder: Path, name: str, make: Callable[[], bytes], source: bytes) -> Path:
    key = hashlib.sha256(name.encode() + source + Path(__file__).read_bytes()).hexdigest()[:16]
    path = folder / f"{name.rsplit('/', 1)[-1].replace(':', '-')}-{key}.tar"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(make())
        partial.rename(path)
    return path
