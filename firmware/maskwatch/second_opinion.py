"""Second opinions on the mask classifier's verdicts: fewer false alarms, and the "incorrect"
class (SPEC F2).

- Confirmation: a face counts as unmasked only when a second, differently trained classifier
  agrees (each alarm class keeps the lower of the two probabilities). The two shipped
  classifiers err on different faces: v3 (drawn masks, turns and cuts in training) misses
  skin-coloured and printed masks that v1 (the photos as they are) gets right, while on the
  scene photos v1 agrees with every unmasked verdict of v3 (models/README.md).
- Nose check: a face called masked whose nose is uncovered (:mod:`maskwatch.nose_check`)
  wears its mask wrong: it becomes "incorrect", an alarm class.

Each model is consulted only about the faces it can change, so a frame of masked faces costs
no confirmation and a frame of unmasked ones no nose check.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from maskwatch.mask_classifier import MaskClassifier
from maskwatch.nose_check import NoseCheck
from maskwatch.types import ALARM_LABELS, Classification, Face, Label


def confirmed(first: Classification, second: Classification) -> Classification:
    """``first`` with every alarm class held to the second model's probability, the rest going
    to mask; a class the second model lacks keeps the first's probability."""
    alarm = {
        name: min(p, second.probs.get(name, p))
        for name, p in first.probs.items()
        if Label(name) in ALARM_LABELS
    }
    return _verdict({Label.MASK.value: max(0.0, 1.0 - sum(alarm.values())), **alarm})


def with_nose(verdict: Classification, uncovered: float, min_uncovered: float) -> Classification:
    """A masked verdict split by the nose check: the mask share times P(uncovered) becomes
    "incorrect", which is the label when P(uncovered) reaches ``min_uncovered``."""
    probs = dict(verdict.probs)
    mask = probs.get(Label.MASK.value, 0.0)
    probs[Label.MASK.value] = round(mask * (1.0 - uncovered), 4)
    incorrect = probs.get(Label.INCORRECT.value, 0.0) + mask * uncovered
    probs[Label.INCORRECT.value] = round(incorrect, 4)
    if uncovered < min_uncovered:
        return Classification(verdict.label, probs[verdict.label.value], probs)
    return Classification(Label.INCORRECT, probs[Label.INCORRECT.value], probs)


def _verdict(probs: dict[str, float]) -> Classification:
    rounded = {name: round(float(p), 4) for name, p in probs.items()}
    best = max(rounded, key=lambda name: rounded[name])
    return Classification(Label(best), rounded[best], rounded)


class SecondOpinion:
    """Applies the configured second opinions; either part may be absent (None)."""

    def __init__(
        self,
        main: MaskClassifier,
        confirm: MaskClassifier | None,
        nose: NoseCheck | None,
        min_uncovered: float,
    ) -> None:
        self.main = main
        self.confirm = confirm
        self.nose = nose
        self.min_uncovered = min_uncovered

    def describe(self) -> str:
        """The model files in use, for the status page (F20)."""
        parts = [self.main.model_file]
        if self.confirm is not None:
            parts.append(f"confirmed by {self.confirm.model_file}")
        if self.nose is not None:
            parts.append(f"nose check {self.nose.model_file}")
        return ", ".join(parts)

    def apply(
        self,
        image: np.ndarray,
        faces: list[Face],
        crops: np.ndarray,
        verdicts: list[Classification],
    ) -> list[Classification]:
        """The verdicts on ``faces`` (with their main-classifier ``crops``) after both checks."""
        confirm, nose = self.confirm, self.nose
        if confirm is not None:
            verdicts = self.confirm_verdicts(
                verdicts,
                lambda chosen: _crops_for(confirm, self.main, image, faces, crops, chosen),
            )
        if nose is not None:
            verdicts = self.nose_verdicts(
                verdicts, lambda chosen: nose.uncovered(image, [faces[i] for i in chosen])
            )
        return list(verdicts)

    def confirm_verdicts(
        self,
        verdicts: list[Classification],
        crops_of: Callable[[list[int]], np.ndarray],
    ) -> list[Classification]:
        """The unmasked verdicts confirmed (unchanged without a confirming model);
        ``crops_of(indices)`` gives the confirming model's crops of those faces."""
        verdicts = list(verdicts)
        unmasked = [i for i, v in enumerate(verdicts) if v.label in ALARM_LABELS]
        if unmasked and self.confirm is not None:
            for i, second in zip(unmasked, self.confirm.classify(crops_of(unmasked))):
                verdicts[i] = confirmed(verdicts[i], second)
        return verdicts

    def nose_verdicts(
        self,
        verdicts: list[Classification],
        uncovered_of: Callable[[list[int]], np.ndarray],
    ) -> list[Classification]:
        """The masked verdicts split by the nose check; ``uncovered_of(indices)`` gives
        P(uncovered) of those faces."""
        verdicts = list(verdicts)
        masked = [i for i, v in enumerate(verdicts) if v.label == Label.MASK]
        if masked:
            for i, p in zip(masked, uncovered_of(masked)):
                verdicts[i] = with_nose(verdicts[i], float(p), self.min_uncovered)
        return verdicts


def _crops_for(
    model: MaskClassifier,
    main: MaskClassifier,
    image: np.ndarray,
    faces: list[Face],
    crops: np.ndarray,
    chosen: list[int],
) -> np.ndarray:
    """The main classifier's crops of the ``chosen`` faces, or new ones when ``model`` is
    framed differently."""
    if model.geometry == main.geometry and model.input_size == main.input_size:
        return crops[chosen]
    return np.stack([model.crop(image, faces[i]) for i in chosen])
