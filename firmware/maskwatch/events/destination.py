"""The interface every alarm destination implements; what it sends is
``maskwatch.alarm_format.AlarmMessage``."""

from __future__ import annotations

from abc import ABC, abstractmethod

from maskwatch.alarm_format import AlarmMessage
from maskwatch.events.compliance import StatsBucket


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

    def show_compliance(self, today: StatsBucket) -> None:
        """Today's compliance statistics changed (a person was counted, or a minute passed).
        Only outputs that keep a state for others to read (MQTT) show it; it must not block
        (it is called from the processing loop), and a failure only logs."""

    def close(self) -> None:
        """Release connections and devices; called once at shutdown or reload."""
