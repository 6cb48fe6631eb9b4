"""The "incorrect" class (SPEC F2): a mask worn below the nose, decided from what is bare.

The mask classifier (mask / no_mask / incorrect) sees the whole face. It learnt incorrect wear
from masks drawn on unmasked photos only, so on a real mask worn low it often leans to "mask"
with a small P(incorrect). The nose check (:mod:`maskwatch.vision.nose_check`) answers the
narrower question F2 asks, on a patch around the nose tip placed by the face mesh: is the nose
bare? Alone it takes pink, white and printed masks for skin; the two err on different faces, so
a face the classifier calls masked wears its mask below the nose when the nose check finds the
nose bare **and** the classifier's own P(incorrect) is not negligible. A mask on the chin
leaves nose and mouth bare, and the classifier's own verdict (no_mask or incorrect) stands:
both alarm alike (``Classification.alarm_probability``).

The nose check runs only on faces called masked, so a frame of unmasked faces costs nothing
more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from maskwatch.config import ClassifierConfig
from maskwatch.types import Classification, Face, Label
from maskwatch.vision.nose_check import NoseCheck

# Gives the nose check's P(uncovered) of the faces at the given indices.
Lookup = Callable[[list[int]], np.ndarray]


def worn_wrong(verdict: Classification) -> Classification:
    """The verdict with its label's share moved to "incorrect": the nose decides how the mask
    is worn, the classifier's confidence stays the verdict's confidence."""
    probs = dict(verdict.probs)
    share = probs.get(verdict.label.value, 0.0)
    probs[verdict.label.value] = 0.0
    incorrect = round(probs.get(Label.INCORRECT.value, 0.0) + share, 4)
    probs[Label.INCORRECT.value] = incorrect
    return Classification(Label.INCORRECT, incorrect, probs)


@dataclass(frozen=True)
class WearRules:
    """Thresholds of the wear check (config ``[classifier]``)."""

    min_uncovered: float
    min_incorrect_below_nose: float

    @classmethod
    def of(cls, config: ClassifierConfig) -> WearRules:
        return cls(config.min_uncovered, config.min_incorrect_below_nose)


class WearCheck:
    """Turns masked verdicts with a bare nose into "incorrect"; ``nose`` None: off."""

    def __init__(self, nose: NoseCheck | None, rules: WearRules) -> None:
        self.nose = nose
        self.rules = rules

    def apply(
        self, image: np.ndarray, faces: list[Face], verdicts: list[Classification]
    ) -> list[Classification]:
        """The classifier's verdicts on ``faces`` (placed by the face mesh) after the check."""
        nose = self.nose
        if nose is None:
            return list(verdicts)
        return self.judge(verdicts, lambda chosen: nose.uncovered(image, [faces[i] for i in chosen]))

    def judge(self, verdicts: list[Classification], uncovered_of: Lookup) -> list[Classification]:
        """``verdicts`` with each masked one whose nose is bare (``uncovered_of(indices)``) and
        whose P(incorrect) reaches the floor made "incorrect". A classifier without the
        incorrect class leaves the nose check to decide alone."""
        verdicts = list(verdicts)
        masked = [i for i, v in enumerate(verdicts) if v.label == Label.MASK]
        if not masked or self.nose is None:
            return verdicts
        rules = self.rules
        for i, uncovered in zip(masked, uncovered_of(masked)):
            incorrect = verdicts[i].probs.get(Label.INCORRECT.value, 1.0)
            if uncovered >= rules.min_uncovered and incorrect >= rules.min_incorrect_below_nose:
                verdicts[i] = worn_wrong(verdicts[i])
        return verdicts
