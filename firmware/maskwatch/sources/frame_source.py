"""The one interface every image source (camera, video file, RTSP, demo scene) implements.

The pipeline only ever asks a source for the next frame, so cameras, files and the synthetic
demo are interchangeable and tests can drive the pipeline from a list of frames.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from types import TracebackType

from maskwatch.types import Frame

log = logging.getLogger(__name__)


class SourceError(Exception):
    """A source could not be opened; the message names the source and why, because it is shown
    to an installer who has to fix a path, a cable or a setting."""


class FrameSource(ABC):
    """A stream of frames that ends with ``None``.

    Sources hold devices or file handles, so they are context managers: leaving the ``with``
    block releases the camera even when the pipeline fails.
    """

    @abstractmethod
    def read(self) -> Frame | None:
        """The next frame, or ``None`` once the source has ended (or was closed)."""

    @abstractmethod
    def close(self) -> None:
        """Release the underlying device or file; safe to call more than once."""

    @property
    @abstractmethod
    def description(self) -> str:
        """One line for logs and the status page, e.g. which file and at what frame rate."""

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        log.debug("closing %s", self.description)
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        while (frame := self.read()) is not None:
            yield frame


class LiveSource(FrameSource):
    """A device or stream whose first frame is read while opening, so a wrong device, URL or
    dead sensor fails at open rather than later; ``read`` hands that frame out first.

    Subclasses set ``self._pending`` to the first frame in ``__init__`` and implement
    ``_next_frame`` (raise SourceError on failure) and ``_release``.
    """

    _closed = False
    _pending: Frame | None = None

    def read(self) -> Frame | None:
        if self._closed:
            return None
        if self._pending is not None:
            frame, self._pending = self._pending, None
            return frame
        return self._next_frame()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    @abstractmethod
    def _next_frame(self) -> Frame: ...

    @abstractmethod
    def _release(self) -> None: ...
