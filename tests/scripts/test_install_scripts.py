"""scripts/install.sh and scripts/uninstall.sh against a temporary root, and the unit file.

--root keeps apt, useradd and systemctl away from the machine running the tests; the slow
venv/pip/model-download steps are skipped with MASKWATCH_SKIP_PIP=1 (documented in
install.sh --help). Needs the Debian packages shellcheck and systemd for the last two tests.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "scripts" / "install.sh"
UNINSTALL = REPO / "scripts" / "uninstall.sh"
UNIT = REPO / "systemd" / "maskwatch.service"
CONFIG = REPO / "config" / "maskwatch.toml"


def run(script: Path, *args: str, skip_pip: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DESTDIR", "MASKWATCH_SKIP_PIP")}
    if skip_pip:
        env["MASKWATCH_SKIP_PIP"] = "1"
    return subprocess.run(
        [str(script), *args], env=env, capture_output=True, text=True, timeout=60
    )


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def installed(tmp_path) -> Path:
    root = tmp_path / "root"
    ok(run(INSTALL, "--root", str(root), skip_pip=True))
    return root


def test_dry_run_prints_the_steps_and_changes_nothing(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    out = ok(run(INSTALL, "--dry-run", "--root", str(root), "--board", "generic"))
    lines = out.splitlines()
    unit_dest = f"{root}/etc/systemd/system/maskwatch.service"
    config_dest = f"{root}/etc/maskwatch/maskwatch.toml"
    assert f"+ install -D -m 0644 {UNIT} {unit_dest}" in lines
    assert f"+ install -m 0640 {CONFIG} {config_dest}" in lines
    assert f"+ install -d -m 0750 {root}/var/lib/maskwatch" in lines
    assert any(
        line.startswith(("skipped (--root): useradd", "skipped (--root): usermod"))
        and line.endswith(" maskwatch")
        for line in lines
    )
    assert f"+ python3 -m venv --system-site-packages {root}/opt/maskwatch/venv" in lines
    assert any(line.startswith(f"+ {root}/opt/maskwatch/venv/bin/python -m pip install") for line in lines)
    assert any("maskwatch setup --config" in line for line in lines)
    for command in ("daemon-reload", "enable maskwatch.service", "restart maskwatch.service"):
        assert f"skipped (--root): systemctl {command}" in lines
    assert "nothing was changed" in out
    assert tree(root) == []


@pytest.mark.parametrize(
    ("board", "extra", "expected", "unexpected"),
    [
        ("pi", [], ["python3-picamera2", "--system-site-packages"], ["libedgetpu1-std"]),
        ("jetson", [], ["gstreamer1.0-tools"], ["python3-picamera2"]),
        ("generic", ["--edgetpu"], ["libedgetpu1-std"], ["python3-picamera2"]),
    ],
)
def test_dry_run_board_specific_steps(tmp_path, board, extra, expected, unexpected):
    out = ok(run(INSTALL, "--dry-run", "--root", str(tmp_path), "--board", board, *extra))
    for text in expected:
        assert text in out
    for text in unexpected:
        assert text not in out


@pytest.mark.parametrize("board", ["pi", "jetson", "generic"])
def test_every_board_gets_the_stream_packages_seen_by_the_venv(tmp_path, board):
    """[stream] can be turned on without installing anything: the RTSP server, the encoders
    and python3-gi, which the venv sees through the system packages."""
    out = ok(run(INSTALL, "--dry-run", "--root", str(tmp_path), "--board", board))
    for package in ("python3-gi", "gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-plugins-bad",
                    "gstreamer1.0-plugins-ugly"):
        assert package in out
    assert "-m venv --system-site-packages" in out


def test_an_older_venv_is_opened_to_the_system_packages(tmp_path):
    """A venv made by an earlier version (no system packages) is switched over on update, so
    python3-gi becomes visible without reinstalling everything into a new venv."""
    venv = tmp_path / "opt/maskwatch/venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/python").write_text("#!/bin/sh\n")
    (venv / "bin/python").chmod(0o755)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\ninclude-system-site-packages = false\n")
    out = ok(run(INSTALL, "--dry-run", "--root", str(tmp_path), "--board", "generic"))
    switch = [line for line in out.splitlines() if line.startswith("+ sed -i")]
    assert len(switch) == 1 and switch[0].endswith(str(venv / "pyvenv.cfg"))
    assert "include-system-site-packages" in switch[0]
    assert "-m venv" not in out


def test_install_creates_the_layout(installed):
    assert (installed / "etc/systemd/system/maskwatch.service").read_bytes() == UNIT.read_bytes()
    config = installed / "etc/maskwatch/maskwatch.toml"
    assert config.read_bytes() == CONFIG.read_bytes()
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    state = installed / "var/lib/maskwatch"
    assert state.is_dir() and stat.S_IMODE(state.stat().st_mode) == 0o750
    opt = installed / "opt/maskwatch"
    assert (opt / "models").is_dir()
    assert (opt / "src/setup.cfg").is_file()
    assert (opt / "src/firmware/maskwatch/service/sd_notify.py").is_file()
    assert os.access(opt / "uninstall.sh", os.X_OK)
    assert not (opt / "venv").exists()  # MASKWATCH_SKIP_PIP=1


def test_update_keeps_an_edited_config_and_replaces_the_unit(installed):
    config = installed / "etc/maskwatch/maskwatch.toml"
    config.write_text('[device]\nname = "front door"\n')
    unit = installed / "etc/systemd/system/maskwatch.service"
    unit.write_text("stale\n")
    out = ok(run(INSTALL, "--root", str(installed), skip_pip=True))
    assert "keeping the existing config" in out
    assert config.read_text() == '[device]\nname = "front door"\n'
    assert unit.read_bytes() == UNIT.read_bytes()


def test_uninstall_keeps_config_and_events_unless_purged(installed):
    event = installed / "var/lib/maskwatch/events.db"
    event.write_text("alarms")
    before = tree(installed)
    ok(run(UNINSTALL, "--dry-run", "--root", str(installed)))
    assert tree(installed) == before

    out = ok(run(UNINSTALL, "--root", str(installed)))
    assert "skipped (--root): systemctl disable --now maskwatch.service" in out
    assert not (installed / "etc/systemd/system/maskwatch.service").exists()
    assert not (installed / "opt/maskwatch").exists()
    assert (installed / "etc/maskwatch/maskwatch.toml").is_file()
    assert event.read_text() == "alarms"

    ok(run(UNINSTALL, "--purge", "--root", str(installed)))
    assert not (installed / "etc/maskwatch").exists()
    assert not (installed / "var/lib/maskwatch").exists()


@pytest.mark.parametrize("script", [INSTALL, UNINSTALL])
def test_bad_usage_fails_with_the_reason(script, tmp_path):
    result = run(script, "--root", str(tmp_path), "--bogus")
    assert result.returncode == 2
    assert "unknown option: --bogus" in result.stderr
    assert tree(tmp_path) == []


def test_scripts_are_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck not installed (Debian package: shellcheck)")
    scripts = sorted(str(p) for p in INSTALL.parent.glob("*.sh")) + [str(INSTALL.parents[1] / ".ci/run")]
    result = subprocess.run(
        ["shellcheck", "-x", *scripts], capture_output=True, text=True, timeout=60,
        cwd=INSTALL.parents[1],
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed (Debian package: systemd)")
    # verify insists that ExecStart's program exists, and /opt/maskwatch/venv does not exist
    # here; --root would need a whole OS tree (sysinit.target, /bin/kill). So verify a copy
    # that only points ExecStart at a program that exists.
    real = "ExecStart=/opt/maskwatch/venv/bin/maskwatch "
    text = UNIT.read_text()
    assert text.count(real) == 1
    copy = tmp_path / "maskwatch.service"  # verify derives the unit type from the name
    copy.write_text(text.replace(real, f"ExecStart={shutil.which('true')} "))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # Unknown keys and bad values are only warnings (exit 0): any line about our unit fails.
    assert "maskwatch.service" not in output, output
