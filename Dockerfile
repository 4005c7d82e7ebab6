# The kaic image: runs the suite (`kaic entrypoint`, as a Sonobuoy plugin or a Job) and every
# probe pod (`python -m conformance.agent ...`). One image, so an air-gapped cluster mirrors one.
#   docker build -t ghcr.io/kaic-dev/kaic-probe:0.1.0 .
# BASE: any image with Python >= 3.11 and pip; the sandbox builds it on a Debian base it makes
# with debootstrap (conformance/sandbox/probe_image.py), since it can pull no image.
ARG BASE=python:3.12-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1

# pip's certificate bundle, for a build behind an intercepting proxy (the sandbox passes the
# host's); empty: pip's own
ARG PIP_CERT=""
WORKDIR /src
COPY pyproject.toml README.md ./
COPY conformance/ conformance/
COPY profiles/ profiles/
COPY fixtures/ fixtures/
COPY reports/results.schema.json reports/
RUN pip install . && rm -rf /src

# Matches runAsUser in the manifests `kaic plugin` and `kaic manifests` print; the root
# filesystem is read-only there, so everything written goes to /tmp (an emptyDir).
USER 65532:65532
ENV HOME=/tmp
WORKDIR /tmp
CMD ["kaic", "entrypoint"]
