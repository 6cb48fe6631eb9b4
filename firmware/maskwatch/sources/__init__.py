"""Frame sources (camera back-ends, video files, the demo scene) and the newest-frame slot: the
first stage. What other stages may use is exported here; the modules are the stage's own.
"""

from maskwatch.sources.demo import DemoSource
from maskwatch.sources.factory import ReopeningSource, open_reopening_source
from maskwatch.sources.frame_slot import LatestFrameSlot
from maskwatch.sources.frame_source import FrameSource, SourceError
from maskwatch.sources.model_fetch import ASSETS, SetupError, asset_path, install_assets
from maskwatch.sources.video_file import VideoFileSource

__all__ = [
    "ASSETS", "DemoSource", "FrameSource", "LatestFrameSlot", "ReopeningSource",
    "SetupError", "SourceError", "VideoFileSource", "asset_path", "install_assets",
    "open_reopening_source",
]
