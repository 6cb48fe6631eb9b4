"""The event interface of the running service: alarm outputs and the web page subscribe here.

Publishing never blocks the processing loop: each subscriber has its own bounded queue and a
subscriber that does not keep up loses its oldest events (counted), never delaying detection
or the other subscribers.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    kind: str  # "alarm", "frame", "status"
    payload: Any


class Subscription:
    def __init__(self, bus: EventBus, name: str, kinds: frozenset[str], maxsize: int) -> None:
        self._bus = bus
        self.name = name
        self.kinds = kinds
        self._queue: deque[Event] = deque(maxlen=maxsize)
        self._cond = threading.Condition()
        self.dropped = 0

    def _offer(self, event: Event) -> None:
        with self._cond:
            if len(self._queue) == self._queue.maxlen:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 100 == 0:
                    log.warning("subscriber %s is behind: %d event(s) dropped", self.name,
                                self.dropped)
            self._queue.append(event)
            self._cond.notify()

    def get(self, timeout: float | None = None) -> Event | None:
        """The oldest waiting event, or None after ``timeout`` seconds without one."""
        with self._cond:
            if not self._queue:
                self._cond.wait(timeout)
            return self._queue.popleft() if self._queue else None

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Subscription] = []

    def subscribe(self, name: str, kinds: set[str], maxsize: int = 100) -> Subscription:
        sub = Subscription(self, name, frozenset(kinds), maxsize)
        with self._lock:
            self._subscribers.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def publish(self, kind: str, payload: Any) -> None:
        event = Event(kind, payload)
        with self._lock:
            targets = [s for s in self._subscribers if kind in s.kinds]
        for sub in targets:
            sub._offer(event)

    def has_subscribers(self, kind: str) -> bool:
        """Lets the publisher skip work (e.g. JPEG encoding) that nobody would receive."""
        with self._lock:
            return any(kind in s.kinds for s in self._subscribers)
