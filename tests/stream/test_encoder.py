"""The encoder choice and each encoder's pipeline text: every one takes its bit rate in its own
unit (x264enc kbit/s, the V4L2 and Jetson encoders bit/s), and the one this machine has is
built by GStreamer itself from the text the stream uses."""

from __future__ import annotations

import pytest

from maskwatch.config import StreamConfig
from maskwatch.stream.encoder import PREFERENCE, choose_encoder, encoder_pipeline
from maskwatch.stream.gst_stack import load_rtsp_stack
from maskwatch.stream.rtsp_server import SOURCE, media_pipeline

from stream_helpers import require_stream_stack

CONFIG = StreamConfig(enabled=True, fps=10, bitrate_kbps=1500)


@pytest.mark.parametrize(("name", "bitrate", "key_frames"), [
    ("x264enc", "bitrate=1500 ", "key-int-max=20"),
    ("v4l2h264enc", "video_bitrate=1500000,", "h264_i_frame_period=20,"),
    ("nvv4l2h264enc", "bitrate=1500000 ", "iframeinterval=20 "),
])
def test_each_encoder_gets_the_bit_rate_in_its_unit_and_a_key_frame_every_2_s(
        name: str, bitrate: str, key_frames: str) -> None:
    text = encoder_pipeline(name, CONFIG)
    assert name in text and bitrate in text and key_frames in text


def test_auto_takes_the_best_encoder_present_and_gstreamer_builds_its_pipeline() -> None:
    require_stream_stack()
    stack = load_rtsp_stack()
    encoder = choose_encoder(stack, CONFIG)
    present = [n for n in PREFERENCE if stack.Gst.ElementFactory.find(n) is not None]
    assert encoder.name == present[0]
    # The media's launch text without the parentheses the RTSP factory wants around it.
    pipeline = stack.Gst.parse_launch(media_pipeline(CONFIG, encoder)[1:-1])
    assert pipeline.get_by_name(SOURCE) is not None and pipeline.get_by_name("pay0") is not None
