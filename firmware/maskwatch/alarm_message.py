"""What every alarm output sends, and the interface every output implements.

The message is built once from the stored event, so every destination reports the same event
id, time and values; receivers deduplicate by ``event_id`` (delivery is at-least-once).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

MESSAGE_ID = 69


@dataclass(frozen=True)
class AlarmMessage:
    event_id: str
    utc_ms: int  # milliseconds since the Unix epoch, UTC
    device: str
    label: str  # "no_mask" or "incorrect"
    confidence: float
    track_id: int
    box: tuple[float, float, float, float]
    snapshot_path: str = ""  # JPEG on the device's disk; "" if none was stored
    snapshot_url: str = ""  # where the web page serves it; "" without a web page
    message_id: int = MESSAGE_ID


class OutputError(Exception):
    """A delivery attempt failed. ``retry`` is False when trying again cannot help (an HTTP
    4xx answer, a message the destination rejects), so the dispatcher gives up at once."""

    def __init__(self, message: str, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class Output(ABC):
    """One alarm destination. ``send`` delivers one message or raises OutputError; it may
    block up to its own timeouts, because the dispatcher runs every output on its own worker
    thread, so a slow destination never delays detection or another destination."""

    name: str
    # The longest one ``send`` can take by the output's own timeouts; the dispatcher reports
    # a send running far beyond it as stuck (a hang no timeout covers).
    deadline_s: float = 30.0

    @abstractmethod
    def send(self, message: AlarmMessage) -> None: ...

    def close(self) -> None:
        """Release connections and devices; called once at shutdown or reload."""
