"""Live video: each face's mesh is refreshed every other frame, not on every frame.

On a 1280x720 frame with 8 faces the mesh costs about 13 ms, which alone would take the live
loop from 40 to 25 fps. A head does not turn far, nor stop being a face, in one frame (67 ms
at the service's 15 fps), so a face that overlaps a face of the previous frame may keep that
face's mesh (pose and presence) for one frame. Each frame refreshes every face seen for the
first time and every mesh already one frame old, and more until at least half the faces are
refreshed; so no mesh is ever more than one processed frame old, and a new detection (a hand, a logo) never inherits a mesh
unless it covers a face of the previous frame. Still images always get fresh meshes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from maskwatch.types import Face
from maskwatch.vision.face_detector import box_iou
from maskwatch.vision.face_landmarks import FaceLandmarks, Mesh

log = logging.getLogger(__name__)

# A face of this frame is the same as one of the previous frame above this box overlap.
SAME_FACE_IOU = 0.5


@dataclass(frozen=True)
class _Remembered:
    box: np.ndarray
    mesh: Mesh
    age: int  # processed frames since the mesh was run


class MeshMemory:
    """:meth:`run` gives every face a mesh at most one processed frame old."""

    def __init__(self, landmarks: FaceLandmarks) -> None:
        self.landmarks = landmarks
        self._last: list[_Remembered] = []

    def forget(self) -> None:
        self._last = []

    def run(self, image: np.ndarray, faces: list[Face]) -> list[Mesh]:
        previous = self._previous(faces)
        fresh = [i for i, p in enumerate(previous) if p is None or p.age >= 1]
        spare = [i for i, p in enumerate(previous) if p is not None and p.age < 1]
        fresh += spare[: max(0, math.ceil(len(faces) / 2) - len(fresh))]
        run = dict(zip(fresh, self.landmarks.run(image, [faces[i] for i in fresh])))
        memory = [
            _Remembered(np.array(face.box), run[i], 0) if i in run
            else _Remembered(np.array(face.box), previous[i].mesh, previous[i].age + 1)
            for i, face in enumerate(faces)
        ]
        self._last = memory
        return [m.mesh for m in memory]

    def _previous(self, faces: list[Face]) -> list[_Remembered | None]:
        """For each face, the previous frame's face it overlaps most, if above SAME_FACE_IOU;
        each previous face goes to one face at most."""
        if not self._last or not faces:
            return [None] * len(faces)
        boxes = np.stack([r.box for r in self._last])
        taken: set[int] = set()
        found: list[_Remembered | None] = []
        for face in faces:
            overlaps = box_iou(np.array(face.box), boxes)
            best = int(np.argmax(overlaps))
            if overlaps[best] > SAME_FACE_IOU and best not in taken:
                taken.add(best)
                found.append(self._last[best])
            else:
                found.append(None)
        return found
