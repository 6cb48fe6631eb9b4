"""Faces in a frame: detector and its view scheduling, face mesh and head pose, crops, quality
gates, classifiers and the TFLite runtime. What other stages may use is exported here; the modules are the stage's own.
"""

from maskwatch.vision.face_analyzer import FaceAnalyzer
from maskwatch.vision.face_detector import box_iou
from maskwatch.vision.head_pose import estimate_head_pose

__all__ = ["FaceAnalyzer", "box_iou", "estimate_head_pose"]
