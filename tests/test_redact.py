"""Credentials never leave the device in a URL or an error message that quotes one."""

import pytest

from maskwatch.redact import has_userinfo, redact_text, redact_url


@pytest.mark.parametrize(("url", "shown"), [
    ("rtsp://admin:s3cret@10.0.0.5:554/h264", "rtsp://admin:***@10.0.0.5:554/h264"),
    ("rtsp://10.0.0.5/h264", "rtsp://10.0.0.5/h264"),
    # '/', '@', ':' and '?' inside an unescaped password are taken whole
    ("rtsp://admin:pa/ss@cam/x", "rtsp://admin:***@cam/x"),
    ("rtsp://admin:p@ss:w?rd@cam:554/x", "rtsp://admin:***@cam:554/x"),
    # a bare token as userinfo is the secret itself
    ("https://ghp_token@hooks.example/x", "https://***@hooks.example/x"),
    ("http://[::1]:8080/a?api_key=3&camera=2", "http://[::1]:8080/a?api_key=***&camera=2"),
    ("rtsp://cam/s?user=admin&password=x&PWD=y&access_token=z&auth=w&secret=v",
     "rtsp://cam/s?user=admin&password=***&PWD=***&access_token=***&auth=***&secret=***"),
    ("https://h/x#token=abc", "https://h/x#***"),
    ("not a url", "not a url"),
])
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_finds_every_url() -> None:
    text = "stream rtsp://a:b/c@cam/x failed; retried http://h/?pwd=9 and rtsp://cam/ok"
    out = redact_text(text)
    assert out == "stream rtsp://a:***@cam/x failed; retried http://h/?pwd=*** and rtsp://cam/ok"
    assert "b/c" not in out and "9" not in out


def test_has_userinfo() -> None:
    assert has_userinfo("https://u:p@h/x")
    assert has_userinfo("https://tok@h/x")
    assert not has_userinfo("https://h/x")
