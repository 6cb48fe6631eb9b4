"""Live video keeps a face's mesh for one frame at most (maskwatch.vision.mesh_memory)."""

from __future__ import annotations

import numpy as np

from maskwatch.types import Face
from maskwatch.vision.face_landmarks import Mesh
from maskwatch.vision.mesh_memory import MeshMemory

IMAGE = np.zeros((720, 1280, 3), np.uint8)


class CountingMesh:
    """Stands in for FaceLandmarks: a mesh whose presence numbers the call that made it."""

    def __init__(self) -> None:
        self.calls = 0
        self.faces_run: list[int] = []

    def run(self, image: np.ndarray, faces: list[Face]) -> list[Mesh]:
        self.calls += 1
        self.faces_run.append(len(faces))
        return [Mesh(np.zeros((468, 3)), float(self.calls)) for _ in faces]


def face_at(x: float) -> Face:
    return Face((x, 100.0, x + 80.0, 180.0), 0.9, np.zeros((6, 2), np.float32))


def test_half_the_faces_are_refreshed_each_frame_and_none_is_older_than_a_frame() -> None:
    fake = CountingMesh()
    memory = MeshMemory(fake)  # type: ignore[arg-type]
    faces = [face_at(100.0 * i) for i in range(8)]
    ages = np.zeros(8)
    first = memory.run(IMAGE, faces)
    assert fake.faces_run == [8] and all(m.presence == 1.0 for m in first)
    for frame in range(2, 8):
        moved = [face_at(100.0 * i + 3.0 * frame) for i in range(8)]
        meshes = memory.run(IMAGE, moved)
        assert fake.faces_run[-1] == 4
        fresh = np.array([m.presence == float(fake.calls) for m in meshes])
        ages = np.where(fresh, 0, ages + 1)
        assert ages.max() <= 1


def test_a_new_detection_never_inherits_a_mesh() -> None:
    fake = CountingMesh()
    memory = MeshMemory(fake)  # type: ignore[arg-type]
    memory.run(IMAGE, [face_at(0.0), face_at(300.0)])
    meshes = memory.run(IMAGE, [face_at(2.0), face_at(300.0), face_at(900.0)])
    assert meshes[2].presence == 2.0  # the new face got a fresh mesh
    assert sum(m.presence == 2.0 for m in meshes) >= 2  # at least half refreshed


def test_forget_and_single_faces_run_fresh() -> None:
    fake = CountingMesh()
    memory = MeshMemory(fake)  # type: ignore[arg-type]
    for _ in range(3):
        memory.run(IMAGE, [face_at(0.0)])
    assert fake.faces_run == [1, 1, 1]
    memory.run(IMAGE, [face_at(0.0), face_at(500.0)])
    memory.forget()
    memory.run(IMAGE, [face_at(0.0), face_at(500.0)])
    assert fake.faces_run[-1] == 2
