"""The H.264 encoder for the stream: the board's hardware encoder when it has one.

GStreamer registers ``nvv4l2h264enc`` only on a Jetson and ``v4l2h264enc`` only where a V4L2
memory-to-memory encoder device exists (the Raspberry Pi's), so asking the registry is the
hardware probe. Each choice comes as the pipeline text that takes raw I420 video in system
memory and gives an H.264 byte stream, with the configured bit rate and a key frame every two
seconds (a recorder that connects mid-stream shows a picture within that time).
"""

from __future__ import annotations

from dataclasses import dataclass

from maskwatch.config import StreamConfig
from maskwatch.stream.gst_stack import RtspStack, StreamUnavailable

# Best first: used by encoder = "auto".
PREFERENCE = ("nvv4l2h264enc", "v4l2h264enc", "x264enc")
KEY_FRAME_EVERY_S = 2


@dataclass(frozen=True)
class Encoder:
    name: str
    pipeline: str  # gst-launch text: I420 system-memory video in, H.264 out


def encoder_pipeline(name: str, config: StreamConfig) -> str:
    """The launch text for encoder ``name`` at the configured bit rate and frame rate."""
    key_every = config.fps * KEY_FRAME_EVERY_S
    bps = config.bitrate_kbps * 1000
    if name == "x264enc":
        return (f"x264enc tune=zerolatency speed-preset=ultrafast bitrate={config.bitrate_kbps} "
                f"key-int-max={key_every}")
    if name == "v4l2h264enc":
        # The Pi's encoder wants the level in its output caps and repeats SPS/PPS itself.
        return (f'v4l2h264enc extra-controls="controls,video_bitrate={bps},'
                f'h264_i_frame_period={key_every},repeat_sequence_header=1" '
                "! video/x-h264,level=(string)4")
    if name == "nvv4l2h264enc":
        # The Jetson encoder reads NVMM memory, which nvvidconv fills.
        return ("nvvidconv ! video/x-raw(memory:NVMM),format=I420 ! "
                f"nvv4l2h264enc bitrate={bps} iframeinterval={key_every} insert-sps-pps=true")
    raise ValueError(f"unknown encoder {name!r} (one of {', '.join(PREFERENCE)})")


def choose_encoder(stack: RtspStack, config: StreamConfig) -> Encoder:
    """The configured encoder, or for "auto" the first of PREFERENCE this device has;
    StreamUnavailable names what is missing."""
    present = [n for n in PREFERENCE if stack.Gst.ElementFactory.find(n) is not None]
    if config.encoder == "auto":
        if not present:
            raise StreamUnavailable(
                "no H.264 encoder found (none of " + ", ".join(PREFERENCE) + "): install "
                "gstreamer1.0-plugins-ugly for x264enc")
        name = present[0]
    elif config.encoder in present:
        name = config.encoder
    else:
        raise StreamUnavailable(
            f"stream.encoder = {config.encoder!r}, but this device has no such GStreamer "
            f"element (present: {', '.join(present) or 'none'}); set encoder = \"auto\"")
    return Encoder(name, encoder_pipeline(name, config))
