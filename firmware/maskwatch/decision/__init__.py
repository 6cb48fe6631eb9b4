"""From per-frame faces to alarms, by frame time: fps cap, tracker, alarm decision and the pipeline
that chains the stages. What other stages may use is exported here; the modules are the stage's
own.
"""

from maskwatch.decision.fps_gate import FpsGate
from maskwatch.decision.pipeline import FrameOutcome, Pipeline, PipelineState, detection_changed

__all__ = ["FpsGate", "FrameOutcome", "Pipeline", "PipelineState", "detection_changed"]
