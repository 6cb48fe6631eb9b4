"""VideoFileSource on small videos written here, plus one real clip when the data is present."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskwatch.sources import video_file as video_source
from maskwatch.sources.frame_source import SourceError
from maskwatch.sources.video_file import VideoFileSource

FPS = 10.0
FRAMES = 12
SIZE = (64, 48)  # width, height
# RGB colours the clip cycles through; saturated so they survive JPEG compression.
COLOURS = [(220, 30, 30), (30, 200, 40), (40, 50, 220)]
SHARED_VIDEOS = Path(__file__).parents[2].parent / "shared" / "data" / "videos"


def write_clip(path: Path, fourcc: str = "MJPG", frames: int = FRAMES) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, SIZE)
    if not writer.isOpened():
        pytest.skip(f"this OpenCV build cannot write {fourcc} into {path.suffix}")
    for i in range(frames):
        rgb = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        rgb[:] = COLOURS[i % len(COLOURS)]
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return write_clip(tmp_path / "clip.avi")


def dominant_channel(image: np.ndarray) -> int:
    return int(np.argmax(image.reshape(-1, 3).mean(axis=0)))


def test_reads_every_frame_with_video_time(clip: Path) -> None:
    with VideoFileSource(clip) as source:
        assert source.fps == pytest.approx(FPS)
        assert source.frame_count == FRAMES
        frames = list(source)
        assert source.read() is None  # stays ended
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [f.t for f in frames] == pytest.approx([i / FPS for i in range(FRAMES)])
    assert frames[0].image.shape == (SIZE[1], SIZE[0], 3)
    assert frames[0].image.dtype == np.uint8


def test_frames_are_rgb(clip: Path) -> None:
    with VideoFileSource(clip) as source:
        frames = [source.read() for _ in COLOURS]
    for frame, colour in zip(frames, COLOURS):
        assert frame is not None
        assert dominant_channel(frame.image) == int(np.argmax(colour))


def test_mp4_container(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "clip.mp4", fourcc="mp4v")
    with VideoFileSource(path) as source:
        frames = list(source)
    assert len(frames) == FRAMES
    assert frames[-1].t == pytest.approx((FRAMES - 1) / FPS)


def test_loop_restarts_with_time_still_increasing(clip: Path) -> None:
    with VideoFileSource(clip, loop=True) as source:
        frames = [source.read() for _ in range(2 * FRAMES + 5)]
    assert all(f is not None for f in frames)
    assert [f.index for f in frames] == [*range(FRAMES), *range(FRAMES), *range(5)]
    assert [f.t for f in frames] == pytest.approx([i / FPS for i in range(2 * FRAMES + 5)])
    # The second pass shows the file's first frame again.
    assert dominant_channel(frames[FRAMES].image) == dominant_channel(frames[0].image)


_RealCapture = cv2.VideoCapture


class _NoFpsCapture:
    """A capture that reports no frame rate, as some streams and containers do (a wrapper:
    subclassing OpenCV's class crashes the interpreter at teardown)."""

    def __init__(self, path: str) -> None:
        self._capture = _RealCapture(path)

    def get(self, prop: int) -> float:
        return 0.0 if prop == cv2.CAP_PROP_FPS else self._capture.get(prop)

    def __getattr__(self, name: str):  # isOpened, read, release
        return getattr(self._capture, name)


def test_without_fps_time_comes_from_the_container(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(video_source.cv2, "VideoCapture", _NoFpsCapture)
    with VideoFileSource(clip, loop=True) as source:
        assert source.fps == 0.0
        times = [source.read().t for _ in range(FRAMES + 3)]  # type: ignore[union-attr]
    assert times == pytest.approx([i / FPS for i in range(FRAMES + 3)], abs=1e-3)


def test_close_ends_the_stream(clip: Path) -> None:
    source = VideoFileSource(clip)
    source.close()
    source.close()
    assert source.read() is None


def test_description_names_file_and_rate(clip: Path) -> None:
    with VideoFileSource(clip) as source:
        assert "clip.avi" in source.description
        assert "10.00 fps" in source.description


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match="does not exist") as err:
        VideoFileSource(path)
    assert str(path) in str(err.value)


def test_directory_is_not_a_video(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="not a regular file"):
        VideoFileSource(tmp_path)


def test_text_file_renamed_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("these are meeting notes, not a video\n" * 20)
    with pytest.raises(SourceError) as err:
        VideoFileSource(path)
    assert str(path) in str(err.value)


def test_truncated_video(tmp_path: Path) -> None:
    good = write_clip(tmp_path / "good.avi")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(good.read_bytes()[:200])  # the header survives, no frame does
    with pytest.raises(SourceError) as err:
        VideoFileSource(cut)
    assert str(cut) in str(err.value)


@pytest.mark.skipif(
    not (SHARED_VIDEOS / "gituatu_mask.mp4").is_file(),
    reason=f"shared clip {SHARED_VIDEOS / 'gituatu_mask.mp4'} is not present",
)
def test_real_clip_metadata_and_length() -> None:
    with VideoFileSource(SHARED_VIDEOS / "gituatu_mask.mp4") as source:
        assert source.fps == pytest.approx(25.0)
        assert source.frame_count == 244
        frames = list(source)
    assert len(frames) == 244
    assert frames[0].image.shape == (404, 720, 3)
    assert frames[-1].t == pytest.approx(243 / 25.0)
