"""`maskwatch analyze`: a video (or the demo scene) through the device pipeline (F27).

Prints one line per alarm and a summary; with --jsonl the lines are JSON in the contract shape
{"event": "alarm", "id", "t", "frame", "track", "label", "confidence", "box"} and a last
{"summary": {"frames", "processed", "alarms", "fps", "people"}}, where "people" counts each
person once by their decided state (masked, unmasked, incorrect, undecided, static), as the
compliance statistics of the device do (F29).
"""

from __future__ import annotations

import json
import logging
import sys

from maskwatch.config import Config
from maskwatch.decision import Pipeline
from maskwatch.sources import FrameSource, SourceError
from maskwatch.types import Alarm, PersonCount, PersonState

log = logging.getLogger(__name__)

EX_BAD_INPUT = 2


def open_source(config: Config, video: str, demo_seconds: float) -> FrameSource:
    if video == "demo":
        from maskwatch.sources import DemoSource

        return DemoSource(
            config.paths.models(), fps=config.processing.fps_cap,
            max_frames=int(demo_seconds * config.processing.fps_cap),
        )
    from maskwatch.sources import VideoFileSource

    return VideoFileSource(video)


def alarm_json(alarm: Alarm) -> dict:
    return {
        "event": "alarm",
        "id": alarm.event_id,
        "t": round(alarm.t, 3),
        "frame": alarm.frame_index,
        "track": alarm.track_id,
        "label": alarm.label.value,
        "confidence": round(alarm.confidence, 4),
        "box": [round(v, 1) for v in alarm.box],
    }


def people_summary(counted: list[PersonCount]) -> dict[str, int]:
    """People per decided state, every state named (0 when none)."""
    people = {state.value: 0 for state in PersonState}
    for count in counted:
        people[count.state.value] += 1
    return people


def _progress(total: int | None):
    """A progress bar on stderr, only for a person watching a terminal."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", file=sys.stderr, leave=False)


def run_analyze(config: Config, video: str, as_jsonl: bool, demo_seconds: float) -> int:
    try:
        source = open_source(config, video, demo_seconds)
    except SourceError as exc:
        print(f"maskwatch analyze: {exc}", file=sys.stderr)
        return EX_BAD_INPUT
    pipeline = Pipeline(config)
    frames = processed = alarms = 0
    counted: list[PersonCount] = []
    first_t = last_t = None
    bar = _progress(getattr(source, "frame_count", None) or None)
    with source:
        for frame in source:
            frames += 1
            first_t = frame.t if first_t is None else first_t
            last_t = frame.t
            if bar is not None:
                bar.update(1)
            outcome = pipeline.process(frame)
            if outcome is None:
                continue
            processed += 1
            counted += outcome.counted
            for alarm in outcome.alarms:
                alarms += 1
                if as_jsonl:
                    print(json.dumps(alarm_json(alarm)), flush=True)
                else:
                    print(
                        f"ALARM t={alarm.t:7.2f}s frame {alarm.frame_index:5d} track "
                        f"{alarm.track_id:3d} {alarm.label.value:9} {alarm.confidence:6.1%}",
                        flush=True,
                    )
    if bar is not None:
        bar.close()
    counted += pipeline.finish()
    people = people_summary(counted)
    duration = (last_t - first_t) if frames > 1 else 0.0
    span = duration + (duration / (frames - 1) if frames > 1 else 0.0)
    fps = round(processed / span, 2) if span > 0 else 0.0
    summary = {"frames": frames, "processed": processed, "alarms": alarms, "fps": fps,
               "people": people}
    if frames == 0:
        print(f"maskwatch analyze: {video}: no frames could be read", file=sys.stderr)
        return EX_BAD_INPUT
    if as_jsonl:
        print(json.dumps({"summary": summary}), flush=True)
    else:
        print(
            f"{frames} frames, {processed} processed ({fps} fps by video time), {alarms} alarm(s)"
        )
        print("people: " + ", ".join(f"{n} {state}" for state, n in people.items()))
    return 0
