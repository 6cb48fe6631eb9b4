"""Config loading and validation: every problem reported with its key path and what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from maskwatch.config import (
    EX_CONFIG,
    REPO_MODELS_DIR,
    Config,
    ConfigError,
    PathsConfig,
    load_config,
    parse_config,
)

REPO = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = REPO / "config" / "maskwatch.toml"

BAD_TOML = """\
[device]
nmae = "typo"

[detector]
min_face = 5
score_threshold = "high"

[decision]
window_s = 0.5
min_dwell_s = 2.0

[source]
kind = "file"

[runtime]
accelerator = "gpu"
"""


def write(tmp_path: Path, text: str | bytes, name: str = "maskwatch.toml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def problem_for(problems: list[str], key: str) -> str:
    """The one problem whose key path is ``key``."""
    matching = [p for p in problems if p.split(":", 1)[0] == key]
    assert len(matching) == 1, f"expected one problem for {key!r} in {problems}"
    return matching[0]


def test_defaults_are_valid_and_round_trip() -> None:
    config = load_config(None)
    assert config == Config()
    # Every default passes its own validation when given explicitly.
    assert parse_config(config.model_dump()) == config
    assert config.detector.min_face == 40
    assert config.decision.min_dwell_s <= config.decision.window_s


@pytest.mark.parametrize("text", ["", "\n  \n", "# only comments\n# [privacy]\n"])
def test_an_empty_or_comments_only_file_is_refused(tmp_path: Path, text: str) -> None:
    """A truncated or emptied file must not silently drop privacy zones and schedule."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match="holds no settings"):
        load_config(path)
    proc = run_cli("check-config", str(path))
    assert proc.returncode == 78
    assert "holds no settings" in proc.stdout + proc.stderr


def test_valid_file_overrides_only_given_keys(tmp_path: Path) -> None:
    path = write(tmp_path, '[detector]\nmin_face = 60\n[source]\nkind = "file"\npath = "a.mp4"\n')
    config = load_config(path)
    assert config.detector.min_face == 60
    assert config.source.path == "a.mp4"
    assert config.detector.score_threshold == Config().detector.score_threshold


def test_every_problem_is_listed_with_its_key_and_what_is_allowed(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_TOML)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.source == str(path)
    problems = err.problems
    assert len(problems) == 6, problems

    unknown = problem_for(problems, "device.nmae")
    assert "unknown key" in unknown and "name" in unknown.split("unknown key", 1)[1]

    out_of_range = problem_for(problems, "detector.min_face")
    assert "greater than or equal to 16" in out_of_range and "5" in out_of_range

    wrong_type = problem_for(problems, "detector.score_threshold")
    assert "valid number" in wrong_type and "'high'" in wrong_type

    literal = problem_for(problems, "runtime.accelerator")
    assert all(v in literal for v in ("'cpu'", "'edgetpu'", "'auto'", "'gpu'"))

    # Section-level validators report the section and name the keys involved.
    dwell = problem_for(problems, "decision")
    assert "min_dwell_s" in dwell and "window_s" in dwell and "2.0" in dwell and "0.5" in dwell

    source = problem_for(problems, "source")
    assert "file" in source and "path" in source

    report = err.report()
    assert str(path) in report and "6 problem(s)" in report
    for p in problems:
        assert f"  - {p}" in report


def test_unknown_section_names_the_allowed_sections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[detectr]\nmin_face = 40\n"))
    (problem,) = info.value.problems
    assert problem.startswith("detectr: unknown key")
    assert "detector" in problem and "decision" in problem


def test_a_removed_key_says_what_became_of_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[detector]\nunmasked_min_score = 0.6\n"))
    (problem,) = info.value.problems
    assert problem.startswith("detector.unmasked_min_score: removed")
    assert "min_presence" in problem
    with pytest.raises(ConfigError, match="processing.tiles_per_frame: removed"):
        load_config(write(tmp_path, "[processing]\ntiles_per_frame = 2\n"))


@pytest.mark.parametrize(
    "key", ["confirm_model", "confirm_edgetpu_model", "wear_model", "min_incorrect_on_chin"]
)
def test_a_config_naming_a_retired_classifier_is_told_to_drop_it(tmp_path: Path, key) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f'[classifier]\n{key} = "x"\n'))
    (problem,) = info.value.problems
    assert problem.startswith(f"classifier.{key}: removed")
    assert "delete this line" in problem


@pytest.mark.skipif("schedule" not in Config.model_fields, reason="no [schedule] section")
def test_unknown_key_in_a_list_item_names_the_item_keys(tmp_path: Path) -> None:
    text = '[[schedule.ranges]]\nstart = "08:00"\nend = "09:00"\nstrat = "x"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    (problem,) = info.value.problems
    assert problem.startswith("schedule.ranges.0.strat: unknown key (allowed: ")
    assert "start" in problem and "end" in problem


def test_parse_config_rejects_wrong_section_type() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"detector": 3}, "inline")
    (problem,) = info.value.problems
    assert problem.startswith("detector:")
    assert str(info.value).startswith("inline: ")


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.problems == ["cannot read file: No such file or directory"]
    assert str(missing) in str(info.value)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    (problem,) = info.value.problems
    assert problem.startswith("cannot read file:") and "directory" in problem.lower()


def test_non_utf8_file(tmp_path: Path) -> None:
    path = write(tmp_path, b'[device]\nname = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems == ["file is not UTF-8 text"]


def test_toml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[detector]\nmin_face = 40\nscore_threshold = = 0.5\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    (problem,) = info.value.problems
    assert problem.startswith("not valid TOML:")
    assert "line 3" in problem


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "maskwatch", *args], capture_output=True, text=True, timeout=60
    )


def test_check_config_cli_reports_every_problem(tmp_path: Path) -> None:
    path = write(tmp_path, BAD_TOML)
    expected = load_config_problems(path)
    proc = run_cli("check-config", str(path))
    assert proc.returncode == EX_CONFIG == 78
    assert "6 problem(s)" in proc.stderr
    for problem in expected:
        assert f"  - {problem}" in proc.stderr
    assert "OK" not in proc.stdout


def test_check_config_cli_unreadable_file(tmp_path: Path) -> None:
    proc = run_cli("check-config", str(tmp_path / "missing.toml"))
    assert proc.returncode == 78
    assert "cannot read file" in proc.stderr


@pytest.mark.skipif(not SHIPPED_CONFIG.is_file(), reason="config/maskwatch.toml not written yet")
def test_check_config_cli_accepts_shipped_config() -> None:
    proc = run_cli("check-config", str(SHIPPED_CONFIG))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{SHIPPED_CONFIG}: OK"


def load_config_problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return info.value.problems


def test_models_dir_from_config_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MASKWATCH_MODELS_DIR", str(tmp_path / "from_env"))
    paths = PathsConfig(models_dir=str(tmp_path / "from_config"))
    assert paths.models() == tmp_path / "from_config"


def test_models_dir_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MASKWATCH_MODELS_DIR", str(tmp_path / "from_env"))
    assert PathsConfig().models() == tmp_path / "from_env"


def test_models_dir_defaults_to_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MASKWATCH_MODELS_DIR", raising=False)
    assert PathsConfig().models() == REPO_MODELS_DIR == REPO / "models"
    monkeypatch.setenv("MASKWATCH_MODELS_DIR", "")
    assert PathsConfig().models() == REPO / "models"


def test_models_dir_read_from_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MASKWATCH_MODELS_DIR", raising=False)
    config = load_config(write(tmp_path, f'[paths]\nmodels_dir = "{tmp_path.as_posix()}/m"\n'))
    assert config.paths.models() == Path(tmp_path / "m")
    assert os.fspath(config.paths.models()).endswith("/m")


def test_errors_never_echo_a_secret(tmp_path: Path) -> None:
    path = write(tmp_path, '[[outputs.webhook]]\nurl = "https://h.example/x?token=abc123"\n'
                           'secret = 12345678\ntimeout_s = "https://u:pw9@h/"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    report = info.value.report()
    assert "outputs.webhook.0.secret" in report and "outputs.webhook.0.timeout_s" in report
    assert "12345678" not in report and "pw9" not in report
