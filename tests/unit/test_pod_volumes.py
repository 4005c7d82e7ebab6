"""The sandbox runtime's volumes: Secret/ConfigMap/emptyDir written as the kubelet would, and
mounted at absolute paths inside a root of the container's own, the host left unchanged."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conformance.sandbox import pod_volumes
from conformance.sandbox.probe_runtime import with_pod_mounts

Obj = dict[str, Any]
OBJECTS: dict[tuple[str, str], Obj] = {
    ("Secret", "envoy"): {"data": {"tls.crt": base64.b64encode(b"CERT").decode(),
                                   "tls.key": base64.b64encode(b"KEY").decode()}},
    ("ConfigMap", "sds"): {"data": {"a.json": "{}", "b.json": "[]"}},
}  # fmt: skip


def read(kind: str, namespace: str, name: str) -> Obj | None:
    assert namespace == "gw"
    return OBJECTS.get((kind, name))


def pod(*volumes: Obj) -> Obj:
    return {"metadata": {"name": "p", "namespace": "gw"}, "spec": {"volumes": list(volumes)}}


def test_secret_configmap_and_empty_dir_are_written(tmp_path: Path) -> None:
    folders = pod_volumes.materialize(read, pod(
        {"name": "certs", "secret": {"secretName": "envoy", "defaultMode": 0o400}},
        {"name": "sds", "configMap": {"name": "sds", "items": [{"key": "b.json",
                                                                "path": "sub/b2.json"}]}},
        {"name": "scratch", "emptyDir": {}},
        {"name": "host", "hostPath": {"path": "/etc"}},
    ), tmp_path)  # fmt: skip
    assert sorted(folders) == ["certs", "scratch", "sds"]
    assert (folders["certs"] / "tls.crt").read_bytes() == b"CERT"
    assert (folders["certs"] / "tls.key").stat().st_mode & 0o777 == 0o400
    assert sorted(p.name for p in folders["sds"].rglob("*") if p.is_file()) == ["b2.json"]
    assert (folders["sds"] / "sub" / "b2.json").read_text() == "[]"
    assert list(folders["scratch"].iterdir()) == []


def test_a_missing_source_waits_unless_optional(tmp_path: Path) -> None:
    with pytest.raises(pod_volumes.MissingSource, match="ConfigMap gw/absent"):
        pod_volumes.materialize(read, pod({"name": "x", "configMap": {"name": "absent"}}),
                                tmp_path)  # fmt: skip
    optional = pod({"name": "x", "configMap": {"name": "absent", "optional": True}})
    assert list(pod_volumes.materialize(read, optional, tmp_path)) == ["x"]


def test_mounts_follow_volume_mounts(tmp_path: Path) -> None:
    folders = {"certs": tmp_path / "certs"}
    container = {"volumeMounts": [
        {"name": "certs", "mountPath": "/certs", "readOnly": True},
        {"name": "certs", "mountPath": "/etc/one.crt", "subPath": "tls.crt"},
        {"name": "unknown", "mountPath": "/x"},
    ]}  # fmt: skip
    assert pod_volumes.mounts(container, folders) == [
        pod_volumes.Mount(tmp_path / "certs", "/certs", True),
        pod_volumes.Mount(tmp_path / "certs" / "tls.crt", "/etc/one.crt", False),
    ]


def test_placeable_never_creates_under_host_folders() -> None:
    assert pod_volumes.placeable("/etc")  # exists: bound over
    assert pod_volumes.placeable("/kaic-no-such-top/sub")  # new top level: in the tmpfs root
    assert not pod_volumes.placeable("/etc/kaic-no-such-dir")  # would be made in the host's /etc


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                    reason="mount namespaces need root")  # fmt: skip
def test_container_sees_its_volumes_at_absolute_paths(tmp_path: Path) -> None:
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "tls.crt").write_text("CERT\n")
    (tmp_path / "root").mkdir()
    mounts = [pod_volumes.Mount(volume, "/kaic-test-certs", True)]
    script = "cat /kaic-test-certs/tls.crt; pwd; touch /kaic-test-certs/x 2>/dev/null || echo ro"
    command = with_pod_mounts({}, ["sh", "-c", script], tmp_path / "root", mounts)
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["CERT", str(tmp_path), "ro"]
    assert not Path("/kaic-test-certs").exists()
