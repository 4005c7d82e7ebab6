"""The CLI's error paths: one clear line on stderr and exit 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.profiles import load_profile
from conformance.report import results_json
from tests.unit.test_reports import sample_run


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kubeconfig(tmp_path: Path, server: str, contexts: tuple[str, ...] = ("ctx",)) -> Path:
    lines = [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        f"- name: c\n  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}",
        "users:",
        "- name: u\n  user: {token: t}",
        "contexts:",
    ]
    lines += [f"- name: {c}\n  context: {{cluster: c, user: u}}" for c in contexts]
    lines.append(f"current-context: {contexts[0]}")
    path = tmp_path / "kubeconfig"
    path.write_text("\n".join(lines) + "\n")
    return path


def one_line_error(capsys: pytest.CaptureFixture[str], code: int, fragment: str) -> str:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    assert fragment in err, err
    return err


def test_missing_kubeconfig(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(
        capsys,
        main(["run", "--kubeconfig", "/nonexistent"]),
        "kubeconfig /nonexistent does not exist",
    )


def test_broken_kubeconfig(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kc"
    path.write_text("clusters: [unclosed\n")
    one_line_error(capsys, main(["run", "--kubeconfig", str(path)]), "not valid YAML")


def test_kubeconfig_that_is_not_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "kc"
    path.write_text("hello: world\n")
    one_line_error(capsys, main(["run", "--kubeconfig", str(path)]), "not a kubeconfig")


def test_unknown_context(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = kubeconfig(tmp_path, "https://127.0.0.1:1", ("one", "two"))
    one_line_error(
        capsys,
        main(["run", "--kubeconfig", str(path), "--context", "three"]),
        "unknown context 'three' (available: one, two)",
    )


def test_unreachable_server(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = f"https://127.0.0.1:{free_port()}"
    path = kubeconfig(tmp_path, server)
    one_line_error(
        capsys,
        main(["run", "--kubeconfig", str(path)]),
        f"cannot reach the API server at {server}: connection refused",
    )


def test_unknown_profile(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(
        capsys, main(["run", "--profile", "nope", "--kubeconfig", "/x"]), "unknown profile 'nope'"
    )


def test_unknown_check(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(
        capsys,
        main(["run", "--check", "gpu.flies", "--kubeconfig", "/x"]),
        "--check gpu.flies: unknown check id",
    )


def test_malformed_profile_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Profile\nname: bad\nrequirements:\n  - {id: warp_drive, level: MUST}\n")
    one_line_error(
        capsys,
        main(["run", "--profile", str(bad), "--kubeconfig", "/x"]),
        f"{bad}:4: requirements[0].id: unknown requirement 'warp_drive'",
    )


@pytest.mark.parametrize("option", ["--timeout-scale", "--observe-window"])
def test_bad_option_value(capsys: pytest.CaptureFixture[str], option: str) -> None:
    one_line_error(capsys, main(["run", option, "-1"]), f"argument {option}: must be positive")


def test_bad_gateway_reference(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(capsys, main(["run", "--gateway", "just-a-name"]), "NAMESPACE/NAME")


def test_bad_run_id(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(
        capsys,
        main(["run", "--run-id", "Not Valid", "--kubeconfig", "/x"]),
        "must be a valid label value",
    )


def test_cleanup_with_missing_kubeconfig(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(capsys, main(["cleanup", "--kubeconfig", "/nonexistent"]), "does not exist")


def test_list_prints_every_requirement(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--profile", "cncf-ai-v1.36"]) == 0
    out = capsys.readouterr().out
    for req in load_profile("cncf-ai-v1.36").requirements:
        assert req.id in out
    assert "not-implemented" in out
    assert "cluster.reachable" in out


def test_list_checks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--checks"]) == 0
    out = capsys.readouterr().out
    assert "cluster.version-supported" in out
    assert "cluster_baseline" in out


def test_profiles_validate_reports_each_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: Profile\nname: bad\nrequirements: []\n")
    good = Path(load_profile("batch").path or "")
    assert main(["profiles", "validate", str(good), str(bad)]) == 2
    captured = capsys.readouterr()
    assert "profile batch with" in captured.out
    assert f"{bad}:3: requirements: must be a non-empty list" in captured.err


def test_report_rerenders_from_results_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = results_json.write(sample_run(), tmp_path / "results.json")
    assert main(["report", str(path)]) == 0
    assert "not-conformant" in capsys.readouterr().out
    assert (tmp_path / "junit.xml").exists()
    assert (tmp_path / "summary.md").exists()


def test_report_of_a_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(capsys, main(["report", "/nonexistent.json"]), "no such file")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("kaic ")


def test_console_script_has_no_traceback() -> None:
    kaic = Path(sys.executable).parent / "kaic"
    proc = subprocess.run(
        [str(kaic), "run", "--kubeconfig", "/nonexistent"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == "kaic: error: kubeconfig /nonexistent does not exist or is not a file"
    )


def test_sandbox_break_without_a_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    one_line_error(
        capsys,
        main(["sandbox", "break", "lws-group-restart", "--dir", str(tmp_path / "none")]),
        f"no sandbox in {tmp_path / 'none'} (start one with: kaic sandbox up)",
    )


def test_sandbox_mend_an_unknown_fault(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one_line_error(
        capsys,
        main(["sandbox", "mend", "everything", "--dir", str(tmp_path)]),
        "argument FAULT: invalid choice: 'everything' (choose from 'device-plugin-no-devices'",
    )


def test_sandbox_break_a_sandbox_that_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "state.json").write_text(
        '{"server": "https://127.0.0.1:1", "kubeconfig": "kc", "pids": {"etcd": 999999999}}'
    )
    one_line_error(
        capsys,
        main(["sandbox", "break", "lws-group-restart", "--dir", str(tmp_path)]),
        f"the sandbox in {tmp_path} is not running (see: kaic sandbox status)",
    )


@pytest.mark.parametrize(
    ("value", "fragment"),
    [("scheduler", "got 'scheduler'"), ("prefill=img:1", "got 'prefill=img:1'"),
     ("sidecar=", "got 'sidecar='")],
)  # fmt: skip
def test_bad_pd_images(value: str, fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    err = one_line_error(capsys, main(["run", "--pd-images", value]), fragment)
    assert "ROLE one of scheduler, sidecar, server" in err
