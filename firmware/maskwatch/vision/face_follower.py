"""Live video: the face mesh follows each known face from frame to frame; the detector only
finds new ones (MediaPipe's own face-mesh pipeline).

Matching detector boxes by overlap loses a face that moves fast or is missed for a frame or two,
and each loss restarts its track (a new id, so a second alarm for one person). Here each known
face keeps its id while the mesh follows it: the landmarks of one frame, shifted by the
face's last motion, give the mesh's crop in the next (:meth:`MeshRoi.of_landmarks`), and the
mesh's presence score says whether the face is still there.

Rules, per processed frame (:meth:`FaceFollower.step`):

- a followed face runs the mesh from its previous landmarks, shifted by its last motion;
  presence >= ``face_landmarks.FACE_FOUND`` (0.5) keeps it followed, otherwise it is *lost*. With several faces the
  mesh runs on at least half of them per frame, on every face at least every other frame
  and on a face moving fast (``FAST``) on every frame: in between, a face moves on by its last
  per-frame motion and keeps its mesh's pose and presence;
- a lost face is retried at its predicted place for ``RETRY_FRAMES`` frames, and may be taken
  back by a detection near it until ``grace_frames`` frames have passed since the mesh or the
  detector last saw it; then it is dropped (its id is never given again);
- the frame's detections (a few detector views per frame, see
  :mod:`maskwatch.vision.view_rotation`) that overlap a followed face are that face, not a
  new one: no second mesh runs, and the detection only refreshes the face's box geometry;
  a detection near a lost face takes it back; any other detection is a new face with a new id
  (followed from the next frame when its mesh finds a face, else held as lost);
- two followed faces that come to cover one face are one: the younger is dropped.

Box, score and keypoints of a followed face are those of its last detection, moved with the
mesh (a similarity transform from the mesh at that detection to the mesh now), so crops, gates
and the doubt rule see the same geometry as on a detection (``score`` is the detector's). As
the views run on different frames, a detection of a followed face is merged with the previous
view's as a full scan's weighted NMS merges views (:func:`_merged`).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from maskwatch.types import Face
from maskwatch.vision.face_detector import blend, box_iou
from maskwatch.vision.face_landmarks import FaceLandmarks, Mesh

log = logging.getLogger(__name__)

# A detection is a followed face when it overlaps it this much, or its centre is inside it.
SAME_FACE_IOU = 0.3
# Two followed faces overlapping this much (or one's centre inside the other) follow one face.
DUPLICATE_IOU = 0.5
# A lost face is looked for at its predicted place on this many frames after it was lost.
RETRY_FRAMES = 3
# A detection takes back a lost face within this many face widths of its predicted centre,
# growing by REACH_PER_FRAME for each frame lost, up to MAX_REACH, if the sizes differ by less
# than SIZE_RATIO.
REACH = 1.0
REACH_PER_FRAME = 0.5
MAX_REACH = 3.0
# A face that moved more than this share of its width per frame runs the mesh on every frame;
# its recent peak speed decays by SPEED_DECAY per mesh run, so a face turning round (speed
# near zero for a frame) is still fast.
FAST = 0.1
SPEED_DECAY = 0.7
# The mesh runs again from its own landmarks when they land this share of the face's width
# away from the guess.
REFINE = 0.1
SIZE_RATIO = 2.0


@dataclass(frozen=True)
class FollowedFace:
    """One face of a frame: ``track_id`` stays the same while the face is followed."""

    track_id: int
    face: Face
    mesh: Mesh


@dataclass(eq=False)
class _Known:
    track_id: int
    anchor: Face  # the last detection of this face
    anchor_points: np.ndarray  # its mesh then (468 x 2, frame pixels)
    points: np.ndarray  # the last mesh that found the face (468 x 3)
    face: Face  # anchor moved to ``points``
    mesh: Mesh  # the last mesh shown for it
    velocity: np.ndarray  # last per-frame shift of the mesh centre (2,)
    view_score: float  # the score of the last detection alone (before merging)
    speed: float = 0.0  # recent peak of |velocity|, decaying by SPEED_DECAY per mesh run
    age: int = 0  # frames since the mesh (or the detector) last saw the face
    missed: int = 0  # mesh runs in a row that did not find it (> 0: lost)


def _similarity(src: np.ndarray, dst: np.ndarray) -> tuple[complex, complex]:
    """Least-squares scale-rotation ``a`` and shift ``b`` with dst ~ a * src + b (points as
    complex numbers)."""
    zs = src[:, 0] + 1j * src[:, 1]
    zd = dst[:, 0] + 1j * dst[:, 1]
    ms, md = zs.mean(), zd.mean()
    zs, zd = zs - ms, zd - md
    a = complex(np.vdot(zs, zd) / max(float(np.vdot(zs, zs).real), 1e-9))
    return a, complex(md - a * ms)


def _moved(anchor: Face, a: complex, b: complex) -> Face:
    """The detection ``anchor`` carried by the similarity (a, b): the box stays upright, as
    the detector draws it, and scales; the keypoints turn with the face."""
    x1, y1, x2, y2 = anchor.box
    centre = a * complex((x1 + x2) / 2.0, (y1 + y2) / 2.0) + b
    half_w, half_h = abs(a) * (x2 - x1) / 2.0, abs(a) * (y2 - y1) / 2.0
    box = (centre.real - half_w, centre.imag - half_h, centre.real + half_w, centre.imag + half_h)
    k = a * (anchor.keypoints[:, 0] + 1j * anchor.keypoints[:, 1]) + b
    keypoints = np.stack([k.real, k.imag], axis=1).astype(np.float32)
    return Face(box, anchor.score, keypoints)


def _merged(followed: Face, followed_score: float, detection: Face) -> Face:
    """A followed face seen again by a detector view, as a full scan would merge the views
    that see one face (weighted NMS): box and keypoints averaged by score, the best score.
    ``followed`` is the previous view's detection moved with the mesh, ``followed_score`` that
    view's own score."""
    if followed_score + detection.score <= 0:
        return detection
    box, score, keypoints = blend(
        np.array([followed.box, detection.box], np.float64),
        np.array([followed_score, detection.score], np.float64),
        np.stack([followed.keypoints, detection.keypoints]).astype(np.float64),
    )
    return Face(tuple(float(v) for v in box), score,  # type: ignore[arg-type]
                keypoints.astype(np.float32))


def _centre(face: Face) -> np.ndarray:
    return np.array(face.centre)


def _inside(point: np.ndarray, face: Face) -> bool:
    x1, y1, x2, y2 = face.box
    return bool(x1 <= point[0] <= x2 and y1 <= point[1] <= y2)


def _touch(a: Face, b: Face) -> bool:
    """Whether the two boxes overlap at all."""
    (ax1, ay1, ax2, ay2), (bx1, by1, bx2, by2) = a.box, b.box
    return ax1 < bx2 and bx1 < ax2 and ay1 < by2 and by1 < ay2


def _same_face(a: Face, b: Face) -> bool:
    """Whether two followed faces are one: overlapping much, or the smaller's centre inside
    the larger."""
    if box_iou(np.array(a.box), np.array([b.box]))[0] > DUPLICATE_IOU:
        return True
    small, large = sorted((a, b), key=lambda f: f.width)
    return _inside(_centre(small), large)


class FaceFollower:
    """Owns the faces known on live video; :meth:`step` once per processed frame."""

    def __init__(self, landmarks: FaceLandmarks, grace_frames: int, max_faces: int) -> None:
        self.landmarks = landmarks
        self.grace_frames = grace_frames
        self.max_faces = max_faces
        self._known: list[_Known] = []
        self._next_id = 1

    def forget(self) -> None:
        """After a pause (schedule, IR) no face is known; ids keep counting up."""
        self._known = []

    def track_ids(self) -> list[int]:
        """Ids of the faces still known (followed or lost within the grace)."""
        return [k.track_id for k in self._known]

    def step(self, image: np.ndarray, detections: list[Face]) -> list[FollowedFace]:
        """This frame's faces: those the mesh followed, then those found or taken back by
        ``detections`` (this frame's detector views)."""
        shown: dict[int, Mesh] = {}
        self._follow(image, shown)
        refreshed: set[int] = set()
        for detection in sorted(detections, key=lambda f: f.score, reverse=True):
            self._place(image, detection, shown, refreshed)
        self._known = [k for k in self._known if k.age <= self.grace_frames]
        return [
            FollowedFace(k.track_id, k.face, shown[k.track_id])
            for k in self._known if k.track_id in shown
        ]

    def _follow(self, image: np.ndarray, shown: dict[int, Mesh]) -> None:
        for known in self._known:
            known.age += 1
        followed = [k for k in self._known if not k.missed]
        due = [k for k in followed if k.age > 1 or self._fast(k)]
        spare = [k for k in followed if k not in due]
        due += spare[: max(0, math.ceil(len(followed) / 2) - len(due))]
        due += [k for k in self._known if 0 < k.missed <= RETRY_FRAMES]
        guesses = [k.points[:, :2] + k.velocity * k.age for k in due]
        meshes = self._refined(image, guesses, self.landmarks.run(image, guesses))
        for known, mesh in zip(due, meshes):
            if mesh.found:
                self._update(known, mesh)
                shown[known.track_id] = mesh
            else:
                known.missed += 1
                if known.missed == 1:
                    log.debug("face %d lost by the mesh", known.track_id)
        for known in followed:
            if not known.missed and known.track_id not in shown:
                shown[known.track_id] = self._coast(known)
        self._drop_duplicates(shown)

    def _refined(
        self, image: np.ndarray, guesses: list[np.ndarray], meshes: list[Mesh]
    ) -> list[Mesh]:
        """The meshes, each run once more from its own landmarks where they ended far from the
        guess: the mesh finds a face off the centre of its crop but places it short of where it
        is, so a face moving faster than guessed would fall behind and out of the crop."""
        again = [
            i for i, (guess, mesh) in enumerate(zip(guesses, meshes))
            if mesh.found and float(np.hypot(*(mesh.points[:, :2].mean(axis=0)
                                              - guess.mean(axis=0))))
            > REFINE * float(np.ptp(guess[:, 0]))
        ]
        better = self.landmarks.run(image, [meshes[i].points for i in again])
        refined = list(meshes)
        for i, mesh in zip(again, better):
            if mesh.found:
                refined[i] = mesh
        return refined

    @staticmethod
    def _fast(known: _Known) -> bool:
        """Whether the face moves too fast to skip a mesh run (its guess would drift)."""
        return known.speed > FAST * known.face.width

    def _update(self, known: _Known, mesh: Mesh) -> None:
        shift = mesh.points[:, :2].mean(axis=0) - known.points[:, :2].mean(axis=0)
        known.velocity = shift / known.age
        known.speed = max(float(np.hypot(*known.velocity)), SPEED_DECAY * known.speed)
        known.points, known.mesh, known.age, known.missed = mesh.points, mesh, 0, 0
        known.face = _moved(known.anchor, *_similarity(known.anchor_points, mesh.points))

    def _coast(self, known: _Known) -> Mesh:
        """A followed face the mesh skips this frame: moved on by its last motion."""
        shift = known.velocity * known.age
        x1, y1, x2, y2 = known.face.box
        face = known.face
        known.face = Face(
            (x1 + shift[0], y1 + shift[1], x2 + shift[0], y2 + shift[1]), face.score,
            (face.keypoints + shift).astype(np.float32),
        )
        points = known.mesh.points.copy()
        points[:, :2] += shift
        return Mesh(points, known.mesh.presence)

    def _drop_duplicates(self, shown: dict[int, Mesh]) -> None:
        followed = sorted((k for k in self._known if k.track_id in shown),
                          key=lambda k: k.track_id)
        for i, older in enumerate(followed):
            for younger in followed[i + 1:]:
                if younger.track_id in shown and older.track_id in shown and _same_face(
                    older.face, younger.face
                ):
                    log.debug("face %d follows face %d: dropped", younger.track_id,
                              older.track_id)
                    del shown[younger.track_id]
                    younger.age = self.grace_frames + 1

    def _place(
        self, image: np.ndarray, detection: Face, shown: dict[int, Mesh], refreshed: set[int]
    ) -> None:
        """A detection: a followed face (the best-scoring one of its size refreshes its
        geometry, any other is dropped), a lost one (take it back) or a new face."""
        centre = _centre(detection)
        for known in self._known:
            if known.track_id not in shown:
                continue
            iou = box_iou(np.array(known.face.box), np.array([detection.box]))[0]
            if iou > SAME_FACE_IOU or _inside(centre, known.face):
                ratio = detection.width / max(known.face.width, 1e-9)
                if known.track_id not in refreshed and 1 / SIZE_RATIO <= ratio <= SIZE_RATIO:
                    refreshed.add(known.track_id)
                    known.anchor = _merged(known.face, known.view_score, detection)
                    known.anchor_points = shown[known.track_id].points[:, :2]
                    known.face, known.view_score = known.anchor, detection.score
                return
        mesh = self.landmarks.run(image, [detection])[0]
        known = self._lost_near(detection, shown)
        if known is None:
            if len(self._known) >= self.max_faces or (
                not mesh.found and any(_touch(k.face, detection) for k in self._known
                                       if k.track_id in shown)
            ):
                # A detection the mesh finds no face in, touching a followed face, is a piece
                # of that face (a view that sees it cut), not a new one.
                return
            known = _Known(self._next_id, detection, mesh.points[:, :2], mesh.points, detection,
                           mesh, np.zeros(2), detection.score)
            self._next_id += 1
            self._known.append(known)
            log.debug("face %d found by the detector", known.track_id)
        known.anchor, known.anchor_points, known.face = detection, mesh.points[:, :2], detection
        known.view_score = detection.score
        known.points, known.mesh, known.age = mesh.points, mesh, 0
        known.missed = 0 if mesh.found else 1
        shown[known.track_id] = mesh

    def _lost_near(self, detection: Face, shown: dict[int, Mesh]) -> _Known | None:
        """The lost face whose predicted centre is nearest the detection, within reach."""
        best, best_distance = None, float("inf")
        for known in self._known:
            if known.track_id in shown:
                continue
            width = max(known.face.width, 1e-9)
            if not 1 / SIZE_RATIO <= detection.width / width <= SIZE_RATIO:
                continue
            predicted = _centre(known.face) + known.velocity * known.age
            distance = float(np.hypot(*(_centre(detection) - predicted))) / width
            reach = min(REACH + REACH_PER_FRAME * known.age, MAX_REACH)
            if distance <= reach and distance < best_distance:
                best, best_distance = known, distance
        return best
