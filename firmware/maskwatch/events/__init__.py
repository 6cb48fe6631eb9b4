"""What happens to an alarm: the event bus, the event log with its outbox, the dispatcher that
feeds the outputs, and the compliance statistics kept beside the event log. What other stages
may use is exported here; the modules are the stage's own.
"""

from maskwatch.events.bus import EventBus, Subscription
from maskwatch.events.compliance import BUCKETS, ComplianceStats, StatsBucket
from maskwatch.events.compliance_demo import seed_demo_history
from maskwatch.events.destination import Output, OutputError
from maskwatch.events.dispatcher import AlarmRecorder, Dispatcher
from maskwatch.events.store import EventStore, EventStoreError, open_event_store

__all__ = [
    "BUCKETS", "AlarmRecorder", "ComplianceStats", "Dispatcher", "EventBus", "EventStore",
    "EventStoreError", "Output", "OutputError", "StatsBucket", "Subscription",
    "open_event_store", "seed_demo_history",
]
