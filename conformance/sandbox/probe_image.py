"""The probe image, `ghcr.io/kaic-dev/kaic-probe:<version>`, built here as its users build it:
from the project's own Dockerfile, with a real builder (Debian's buildah), on a base this
machine makes, since it can pull no image: a Debian root file system from Debian's packages
(debootstrap), with Python and pip.

buildah keeps its images under `<cache>/buildah/` (vfs storage; its run state beside it);
the finished image is written as a Docker image archive, `<cache>/images/kaic-probe-<key>.tar`,
keyed by the content of what the Dockerfile copies, and imported into the real nodes'
containerd. RUN steps share the host's network (no NAT, no namespace of buildah's own): pip
reaches PyPI as `make setup` does, with the host's certificate bundle (`PIP_CERT`), so that a
build behind an intercepting proxy works."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from conformance.errors import KaicError
from conformance.probes import PROBE_IMAGE
from conformance.resources import data_path

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = ("python3", "python3-pip", "python-is-python3", "ca-certificates")
# What the Dockerfile copies into the image (its build context, less caches).
CONTEXT = ("Dockerfile", "pyproject.toml", "README.md", "conformance", "profiles", "fixtures",
           "reports/results.schema.json")  # fmt: skip
TRIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
           "usr/share/locale", "usr/share/info")  # fmt: skip
HOST_CA = Path(os.environ.get("PIP_CERT") or os.environ.get("SSL_CERT_FILE")
               or "/etc/ssl/certs/ca-certificates.crt")  # fmt: skip
Progress = Callable[[str], None]


def missing() -> str | None:
    """Why the probe image cannot be built here, if it cannot."""
    if os.geteuid() != 0:
        return "building the probe image needs root (debootstrap, buildah)"
    for tool, package in (("debootstrap", "debootstrap"), ("buildah", "buildah")):
        if shutil.which(tool) is None:
            return f"{tool} is missing (Debian's {package}; `make setup` installs it)"
    if not (data_path(".") / "Dockerfile").is_file():
        return "no Dockerfile: the probe image is built from a checkout of kaic"
    return None


def _context_files(root: Path) -> list[Path]:
    files: list[Path] = []
    for name in CONTEXT:
        path = root / name
        found = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        files += [p for p in found if "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return files


def content_key(root: Path) -> str:
    digest = hashlib.sha256(f"{SUITE} {BASE_PACKAGES} {PROBE_IMAGE}".encode())
    for path in _context_files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _buildah(cache: Path) -> list[str]:
    return ["buildah", "--root", str(cache / "buildah"), "--runroot", str(cache / "buildah-run"),
            "--storage-driver", "vfs"]  # fmt: skip


def _run(cmd: list[str], what: str, log: Path) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        tail = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["?"]
        raise KaicError(f"probe image: {what} failed: {tail[0]} (log: {log})")
    return done.stdout.strip()


def _base(cache: Path, log: Path, say: Progress) -> str:
    """The Debian base in buildah's storage, made once per suite and package list."""
    tag = hashlib.sha256(f"{SUITE} {MIRROR} {BASE_PACKAGES}".encode()).hexdigest()[:12]
    name = f"localhost/kaic-base:{SUITE}-{tag}"
    listed = subprocess.run([*_buildah(cache), "images", "-q", name], capture_output=True,
                            text=True, check=False)  # fmt: skip
    if listed.returncode == 0 and listed.stdout.strip():
        return name
    say(f"making the probe image's base: Debian {SUITE} with {', '.join(BASE_PACKAGES)}")
    with tempfile.TemporaryDirectory(dir=cache) as work:
        root = Path(work) / "rootfs"
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
              SUITE, str(root), MIRROR], "debootstrap", log)  # fmt: skip
        for folder in TRIMMED:
            shutil.rmtree(root / folder, ignore_errors=True)
        container = _run([*_buildah(cache), "from", "scratch"], "buildah from", log)
        try:
            mount = _run([*_buildah(cache), "mount", container], "buildah mount", log)
            _run(["cp", "-a", f"{root}/.", mount], "copying the base", log)
            _run([*_buildah(cache), "commit", "-q", container, name], "buildah commit", log)
        finally:
            subprocess.run([*_buildah(cache), "rm", container], capture_output=True, check=False)
    return name


def build(cache: Path, say: Progress) -> Path:
    """The probe image as a Docker image archive (built unless this content's is cached)."""
    why_not = missing()
    if why_not:
        raise KaicError(why_not)
    root = data_path(".")
    folder = cache / "images"
    folder.mkdir(parents=True, exist_ok=True)
    archive = folder / f"kaic-probe-{content_key(root)}.tar"
    if archive.exists():
        return archive
    log = folder / "probe-image.log"
    base = _base(cache, log, say)
    say(f"building {PROBE_IMAGE} from the Dockerfile with buildah")
    ca = ["-v", f"{HOST_CA}:/etc/kaic-build-ca.crt:ro", "--build-arg",
          "PIP_CERT=/etc/kaic-build-ca.crt"] if HOST_CA.is_file() else []  # fmt: skip
    _run([*_buildah(cache), "bud", "-q", "--isolation", "chroot", "--network", "host",
          "--build-arg", f"BASE={base}", *ca, "-t", PROBE_IMAGE, "-f", str(root / "Dockerfile"),
          str(root)], "buildah bud", log)  # fmt: skip
    partial = archive.with_suffix(f".{os.getpid()}.partial")
    try:
        target = f"docker-archive:{partial}:{PROBE_IMAGE}"
        _run([*_buildah(cache), "push", "-q", PROBE_IMAGE, target], "buildah push", log)
        partial.rename(archive)
    finally:
        partial.unlink(missing_ok=True)
        subprocess.run([*_buildah(cache), "rmi", PROBE_IMAGE], capture_output=True, check=False)
    for older in folder.glob("kaic-probe-*.tar"):  # one build of the probe image is kept
        if older != archive:
            older.unlink(missing_ok=True)
    return archive
