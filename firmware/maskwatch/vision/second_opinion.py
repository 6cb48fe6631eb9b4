"""Second opinions on the mask classifier's verdicts: fewer false alarms, and the "incorrect"
class (SPEC F2).

- Confirmation: a face counts as unmasked only when a second, differently trained classifier
  agrees (each alarm class keeps the lower of the two probabilities). The two shipped
  classifiers err on different faces: v3 (drawn masks, turns and cuts in training) misses
  skin-coloured and printed masks that v1 (the photos as they are) gets right. The second
  model answers for the crop and its mirror image together, so that one side of a face (a
  shadow, a shoulder in front) cannot overrule an alarm on its own (models/README.md).
- Wear checks: a face called masked whose nose is uncovered (:mod:`maskwatch.vision.nose_check`)
  wears its mask below the nose, and a face called unmasked may have the mask on its chin.
  The nose check alone mistakes pink, white and printed masks for skin, and a three-class
  "wear" classifier alone mistakes a quarter of real street faces for masks worn wrong; they
  err on different faces, so a masked face becomes "incorrect" only when both say so, and an
  unmasked one only when the wear classifier is all but sure.

Each model is consulted only about the faces it can change, so a frame of masked faces costs
no confirmation, and the wear classifier sees a masked face only after the nose check flagged
it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from maskwatch.config import ClassifierConfig
from maskwatch.types import ALARM_LABELS, Classification, Face, Label, ModelMismatch
from maskwatch.vision.mask_classifier import MaskClassifier
from maskwatch.vision.nose_check import NoseCheck

# Gives a model's per-face answer for the faces at the given indices.
Lookup = Callable[[list[int]], np.ndarray]


def confirmed(first: Classification, second: Classification) -> Classification:
    """``first`` with every alarm class held to the second model's probability, the rest going
    to mask; a class the second model lacks keeps the first's probability."""
    alarm = {
        name: min(p, second.probs.get(name, p))
        for name, p in first.probs.items()
        if Label(name) in ALARM_LABELS
    }
    return _verdict({Label.MASK.value: max(0.0, 1.0 - sum(alarm.values())), **alarm})


def worn_wrong(verdict: Classification) -> Classification:
    """The verdict with its label's share moved to "incorrect": the wear checks decide how the
    mask is worn, the main classifier's confidence stays the verdict's confidence."""
    probs = dict(verdict.probs)
    share = probs.get(verdict.label.value, 0.0)
    probs[verdict.label.value] = 0.0
    incorrect = round(probs.get(Label.INCORRECT.value, 0.0) + share, 4)
    probs[Label.INCORRECT.value] = incorrect
    return Classification(Label.INCORRECT, incorrect, probs)


def _verdict(probs: dict[str, float]) -> Classification:
    rounded = {name: round(float(p), 4) for name, p in probs.items()}
    best = max(rounded, key=lambda name: rounded[name])
    return Classification(Label(best), rounded[best], rounded)


@dataclass(frozen=True)
class FaceBatch:
    """The faces of one frame being classified, with the main classifier's crops of them; each
    face placed by its mesh where the mesh found one (:meth:`Mesh.aligned`)."""

    image: np.ndarray
    faces: list[Face]
    crops: np.ndarray

    def crops_for(
        self, model: MaskClassifier, main: MaskClassifier, chosen: list[int]
    ) -> np.ndarray:
        """The main classifier's crops of the ``chosen`` faces, or new ones when ``model`` is
        framed differently."""
        if model.geometry == main.geometry and model.input_size == main.input_size:
            return self.crops[chosen]
        return np.stack([model.crop(self.image, self.faces[i]) for i in chosen])


@dataclass(frozen=True)
class WearRules:
    """Thresholds of the wear checks (config ``[classifier]``)."""

    min_uncovered: float
    min_incorrect_below_nose: float
    min_incorrect_on_chin: float

    @classmethod
    def of(cls, config: ClassifierConfig) -> WearRules:
        return cls(
            config.min_uncovered, config.min_incorrect_below_nose, config.min_incorrect_on_chin
        )


class SecondOpinion:
    """Applies the configured second opinions; each model may be absent (None)."""

    def __init__(
        self,
        main: MaskClassifier,
        confirm: MaskClassifier | None,
        nose: NoseCheck | None,
        rules: WearRules,
        wear: MaskClassifier | None = None,
    ) -> None:
        if wear is not None and Label.INCORRECT not in wear.classes:
            raise ModelMismatch(
                f"{wear.model_file} cannot check how a mask is worn: its classes are "
                f"{[c.value for c in wear.classes]}, without 'incorrect'"
            )
        self.main = main
        self.confirm = confirm
        self.nose = nose
        self.wear = wear
        self.rules = rules

    def describe(self) -> str:
        """The model files in use, for the status page (F20)."""
        parts = [self.main.model_file]
        if self.confirm is not None:
            parts.append(f"confirmed by {self.confirm.model_file}")
        if self.nose is not None:
            parts.append(f"nose check {self.nose.model_file}")
        if self.wear is not None:
            parts.append(f"wear check {self.wear.model_file}")
        return ", ".join(parts)

    def confirm_faces(
        self, batch: FaceBatch, verdicts: list[Classification]
    ) -> list[Classification]:
        """The main classifier's verdicts on the batch after confirmation."""
        confirm = self.confirm
        if confirm is None:
            return list(verdicts)
        return self.confirm_verdicts(
            verdicts, lambda chosen: batch.crops_for(confirm, self.main, chosen)
        )

    def check_wear(
        self, batch: FaceBatch, verdicts: list[Classification]
    ) -> list[Classification]:
        """The (confirmed) verdicts on the batch after the wear checks."""
        nose, wear = self.nose, self.wear

        def uncovered_of(chosen: list[int]) -> np.ndarray:
            assert nose is not None
            return nose.uncovered(batch.image, [batch.faces[i] for i in chosen])

        def incorrect_of(chosen: list[int]) -> np.ndarray:
            assert wear is not None
            probs = wear.probabilities(batch.crops_for(wear, self.main, chosen))
            return probs[:, wear.classes.index(Label.INCORRECT)]

        return self.wear_verdicts(verdicts, uncovered_of, incorrect_of)

    def apply(self, batch: FaceBatch, verdicts: list[Classification]) -> list[Classification]:
        """Confirmation, then the wear checks."""
        return self.check_wear(batch, self.confirm_faces(batch, verdicts))

    def confirm_verdicts(
        self, verdicts: list[Classification], crops_of: Lookup
    ) -> list[Classification]:
        """The unmasked verdicts confirmed (unchanged without a confirming model);
        ``crops_of(indices)`` gives the confirming model's crops of those faces."""
        verdicts = list(verdicts)
        unmasked = [i for i, v in enumerate(verdicts) if v.label in ALARM_LABELS]
        if unmasked and self.confirm is not None:
            seconds = self.confirm.classify(crops_of(unmasked), mirrored=True)
            for i, second in zip(unmasked, seconds):
                verdicts[i] = confirmed(verdicts[i], second)
        return verdicts

    def wear_verdicts(
        self, verdicts: list[Classification], uncovered_of: Lookup, incorrect_of: Lookup
    ) -> list[Classification]:
        """Masked verdicts whose nose is uncovered (and, with a wear classifier, whose
        P(incorrect) agrees) and unmasked verdicts the wear classifier calls incorrect become
        "incorrect". ``uncovered_of`` / ``incorrect_of`` give the nose check's P(uncovered) and
        the wear classifier's P(incorrect) of the faces at the given indices."""
        rules = self.rules
        verdicts = list(verdicts)
        # (face index, the P(incorrect) the wear classifier must reach for it)
        suspects: list[tuple[int, float]] = []
        masked = [i for i, v in enumerate(verdicts) if v.label == Label.MASK]
        if masked and self.nose is not None:
            suspects = [
                (i, rules.min_incorrect_below_nose)
                for i, p in zip(masked, uncovered_of(masked))
                if p >= rules.min_uncovered
            ]
        if self.wear is None:
            wrong = [i for i, _ in suspects]
        else:
            if rules.min_incorrect_on_chin < 1.0:  # 1 switches the chin rule off
                suspects += [
                    (i, rules.min_incorrect_on_chin)
                    for i, v in enumerate(verdicts)
                    if v.label == Label.NO_MASK
                ]
            found = incorrect_of([i for i, _ in suspects]) if suspects else []
            wrong = [i for (i, floor), p in zip(suspects, found) if p >= floor]
        for i in wrong:
            verdicts[i] = worn_wrong(verdicts[i])
        return verdicts
