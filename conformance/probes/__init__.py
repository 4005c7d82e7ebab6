"""Probe workloads: the image every probe pod runs, and builders for probe manifests."""

# The probe image: the kaic package with its stdlib-only agent (`python -m conformance.agent`).
# The sandbox runs pods of this image as local processes; see docs/sandbox.md.
PROBE_REPOSITORY = "ghcr.io/kaic-dev/kaic-probe"
PROBE_IMAGE = f"{PROBE_REPOSITORY}:0.1.0"


def is_probe_image(image: str) -> bool:
    """True for any tag or digest of an image whose repository ends with `kaic-probe`."""
    repository = image.split("@", 1)[0]
    last = repository.rsplit("/", 1)[-1]
    if ":" in last:
        repository = repository[: repository.rindex(":")]
    return repository.endswith("kaic-probe")
