"""From per-frame faces to alarms, by frame time: fps cap, tracker, alarm decision and the pipeline
that chains the stages. What other stages may use is exported here; the modules are the stage's
own.
"""

from maskwatch.decision.pipeline import FrameOutcome, Pipeline, detection_changed

__all__ = ["FrameOutcome", "Pipeline", "detection_changed"]
