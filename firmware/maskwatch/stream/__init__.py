"""Video for recorders (F30): the processed frames as an H.264 RTSP stream. GStreamer is
imported only when the stream starts, so with ``[stream] enabled = false`` nothing of it
loads. What other stages may use is exported here; the modules are the stage's own.
"""

from maskwatch.stream.gst_stack import StreamUnavailable
from maskwatch.stream.recorder_stream import RecorderStream

__all__ = ["RecorderStream", "StreamUnavailable"]
