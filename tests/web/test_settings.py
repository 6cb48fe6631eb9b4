"""The settings API on a real config file: validated like the file, written atomically with
comments and hand edits kept, secrets never sent back, applied through the reload path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from maskwatch.config import load_config
from maskwatch.web import create_app
from maskwatch.web.auth import set_password

from test_web_api import PASSWORD, FakeService, _login, logged_in

HAND_WRITTEN = """\
# Entrance camera, hall B (set up by hand)
[device]
name = "hall-b"   # shown in alarms

[detector]
# smaller faces than the default: the camera hangs high
min_face = 48

[[outputs.webhook]]
url = "https://vms.example/hook"
secret = "s3cret-hmac-key"

[storage]
state_dir = "{state}"

[stream]
user = "nvr"
password = "rtsp-pa55word"
"""


class SettingsService(FakeService):
    def __init__(self, state_dir: Path, config_path: Path) -> None:
        super().__init__(state_dir)
        self.config_path = str(config_path)
        self.reloads = 0

    def request_reload(self) -> None:
        self.reloads += 1


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "maskwatch.toml"
    path.write_text(HAND_WRITTEN.replace("{state}", str(tmp_path / "state")))
    return path


@pytest.fixture
def service(tmp_path: Path, config_file: Path):
    set_password(tmp_path / "state", PASSWORD)
    svc = SettingsService(tmp_path / "state", config_file)
    yield svc
    svc.store.close()


@pytest.fixture
def client(service):
    with logged_in(service) as client:
        yield client


def csrf(client) -> dict[str, str]:
    html = client.get("/status").get_data(as_text=True)
    return {"X-CSRF-Token": re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)}


def test_a_save_keeps_comments_and_hand_edits_and_reloads(client, service, config_file) -> None:
    before = config_file.read_text()
    # edited by hand after the page was opened: kept by the next save from the page
    config_file.write_text(before.replace('name = "hall-b"', 'name = "hall-b2"'))
    response = client.post("/api/settings/detector", json={"min_face": 60}, headers=csrf(client))
    assert response.status_code == 200, response.json
    text = config_file.read_text()
    assert text == before.replace('name = "hall-b"', 'name = "hall-b2"').replace(
        "min_face = 48", "min_face = 60")
    assert load_config(config_file).detector.min_face == 60
    assert (config_file.parent / "maskwatch.toml.bak").read_text().count("min_face = 48") == 1
    assert service.reloads == 1


def test_a_bad_value_is_shown_at_its_field_and_changes_nothing(client, service,
                                                               config_file) -> None:
    before = config_file.read_bytes()
    response = client.post("/api/settings/detector", json={"min_face": 5000},
                           headers=csrf(client))
    assert response.status_code == 400
    assert "detector.min_face" in response.json["problems"]
    assert "less than or equal" in response.json["problems"]["detector.min_face"]
    assert config_file.read_bytes() == before
    assert service.reloads == 0
    unknown = client.post("/api/settings/paths", json={"models_dir": "/tmp"},
                          headers=csrf(client))
    assert unknown.status_code == 404 and config_file.read_bytes() == before


def test_secrets_are_write_only(client, config_file) -> None:
    shown = client.get("/api/settings")
    hook = shown.json["settings"]["outputs"]["webhook"][0]
    assert hook["secret"] == "" and hook["secret_set"] is True
    assert "s3cret" not in shown.get_data(as_text=True)
    stream = shown.json["settings"]["stream"]
    assert stream["password"] == "" and stream["password_set"] is True
    assert "rtsp-pa55" not in shown.get_data(as_text=True)
    # the page sends the destination back as shown: the secret stays as it was
    response = client.post("/api/settings/outputs", json={"webhook": [dict(hook, timeout_s=3)]},
                           headers=csrf(client))
    assert response.status_code == 200, response.json
    saved = load_config(config_file).outputs.webhook[0]
    assert saved.secret == "s3cret-hmac-key" and saved.timeout_s == 3
    backup = client.get("/api/settings/config.toml")
    assert "s3cret" not in backup.get_data(as_text=True)
    assert "rtsp-pa55" not in backup.get_data(as_text=True)
    assert "# Entrance camera, hall B" in backup.get_data(as_text=True)


def test_the_stream_is_set_from_the_page_and_its_password_kept(client, service,
                                                              config_file) -> None:
    """As the stream form sends it: no password (blank = keep), the other keys changed."""
    response = client.post("/api/settings/stream", json={
        "enabled": True, "port": 9554, "width": 640, "height": 360, "fps": 10,
        "bitrate_kbps": 1000, "boxes": False, "user": "nvr", "auth": "basic",
    }, headers=csrf(client))
    assert response.status_code == 200, response.json
    stream = load_config(config_file).stream
    assert (stream.enabled, stream.port, stream.width, stream.boxes, stream.auth) == (
        True, 9554, 640, False, "basic")
    assert stream.password == "rtsp-pa55word" and service.reloads == 1
    # Without a user the password must go too: the answer names the field, the file stays.
    before = config_file.read_bytes()
    refused = client.post("/api/settings/stream", json={"user": ""}, headers=csrf(client))
    assert refused.status_code == 400 and "stream.user" in refused.json["problems"]
    assert "rtsp-pa55" not in refused.get_data(as_text=True)
    assert config_file.read_bytes() == before


def test_a_backup_restores_and_a_bad_upload_changes_nothing(client, config_file) -> None:
    backup = client.get("/api/settings/config.toml").get_data(as_text=True)
    client.post("/api/settings/device", json={"name": "elsewhere"}, headers=csrf(client))
    restored = client.post("/api/settings/config.toml", data=backup.encode(),
                           headers=csrf(client), content_type="application/toml")
    assert restored.status_code == 200, restored.json
    config = load_config(config_file)
    assert config.device.name == "hall-b" and config.outputs.webhook[0].secret == "s3cret-hmac-key"
    assert config.stream.password == "rtsp-pa55word"
    before = config_file.read_bytes()
    for bad in ("", "[detector]\nmin_face = -1\n", "not = [toml"):
        answer = client.post("/api/settings/config.toml", data=bad.encode(),
                             headers=csrf(client), content_type="application/toml")
        assert answer.status_code == 400, bad
        assert config_file.read_bytes() == before


def test_settings_need_the_login_and_the_csrf_token(service, config_file) -> None:
    app = create_app(service)
    anonymous = app.test_client()
    assert anonymous.get("/api/settings").status_code == 401
    user = app.test_client()
    _login(user)
    before = config_file.read_bytes()
    assert user.post("/api/settings/device", json={"name": "x"}).status_code == 400
    assert config_file.read_bytes() == before
    app.extensions["maskwatch"]["hub"].close()


def test_without_a_config_file_nothing_is_saved(tmp_path: Path) -> None:
    set_password(tmp_path / "plain", PASSWORD)
    plain = FakeService(tmp_path / "plain")
    with logged_in(plain) as client:
        answer = client.get("/api/settings")
    assert answer.status_code == 409 and "without a config file" in answer.json["error"]
    plain.store.close()
