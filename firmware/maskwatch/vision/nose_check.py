"""Is the nose uncovered? The check that tells a mask worn below the nose (SPEC F2 "incorrect").

A whole-face classifier trained on masks drawn below the nose learns the drawing as much as
the wearing: on real street faces it called a quarter of the unmasked ones "incorrect" (see
models/README.md). The question "is there skin or fabric on the nose?" is narrower: a small
patch around the nose tip, cut along the face's own axes from BlazeFace's keypoints, answers it,
and its "uncovered" class is learnt mostly from real unmasked noses. It is asked only about
faces the mask classifier calls masked: a nose in plain view above a mask is a mask worn wrong.
"""

from __future__ import annotations

import math

import numpy as np

from maskwatch.types import Face, ModelMismatch
from maskwatch.vision.face_crop import crop_face
from maskwatch.vision.mask_classifier import ManifestModel

RIGHT_EYE, LEFT_EYE, NOSE = 0, 1, 2
# The patch centre lies this far from the nose tip towards the eyes' midpoint, so that it
# holds the tip and the lower bridge (which a correctly worn mask covers) and not the upper
# lip (which a mask worn below the nose covers too).
TOWARDS_EYES = 0.25
# Half the patch side, in eye distances: the nose's width with a little cheek.
HALF_SIDE = 0.45
UNCOVERED = "uncovered"


def nose_patch(image: np.ndarray, face: Face, size: int) -> np.ndarray:
    """The size x size patch around the nose, upright by the eye line (training and device)."""
    k = np.asarray(face.keypoints, np.float64)
    eye_mid = (k[RIGHT_EYE] + k[LEFT_EYE]) / 2.0
    eyes = float(math.hypot(*(k[LEFT_EYE] - k[RIGHT_EYE])))
    cx, cy = k[NOSE] + TOWARDS_EYES * (eye_mid - k[NOSE])
    half = max(HALF_SIDE * eyes, 1.0)
    return crop_face(image, (cx - half, cy - half, cx + half, cy + half), k, size)


class NoseCheck(ManifestModel):
    """Probability that each face's nose is uncovered, all faces in one invoke."""

    def setup(self) -> None:
        classes = self.entry["classes"]
        if UNCOVERED not in classes:
            raise ModelMismatch(
                f"{self.model_file} is not a nose check: its classes are {classes}, "
                f"without {UNCOVERED!r}"
            )
        self._uncovered = classes.index(UNCOVERED)

    def uncovered(self, image: np.ndarray, faces: list[Face]) -> np.ndarray:
        """P(uncovered) per face."""
        if not faces:
            return np.zeros(0, np.float32)
        patches = [nose_patch(image, f, self.input_size) for f in faces]
        return self.classify_patches(np.stack(patches))

    def classify_patches(self, patches: np.ndarray) -> np.ndarray:
        """P(uncovered) per N x size x size x 3 patch (RGB uint8) from :func:`nose_patch`."""
        return self.probabilities(patches)[:, self._uncovered].astype(np.float32)
