"""TFLite interpreter creation: ai-edge-litert first, tflite-runtime second, Edge TPU optional.

The Edge TPU delegate is probed in a child process first because a mismatched libedgetpu can
segfault the process that loads it; the service must survive that and fall back to the CPU.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EDGETPU_LIBRARY = "libedgetpu.so.1"
PROBE_TIMEOUT_S = 20.0


def _import_runtime() -> tuple[Any, Any, str]:
    try:
        from ai_edge_litert.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "ai-edge-litert"
    except ImportError:
        pass
    try:
        from tflite_runtime.interpreter import Interpreter, load_delegate

        return Interpreter, load_delegate, "tflite-runtime"
    except ImportError:
        raise RuntimeError(
            "no TFLite runtime installed: pip install ai-edge-litert "
            "(or tflite-runtime==2.14.* where ai-edge-litert has no wheel)"
        ) from None


_PROBE_CODE = """
import sys
try:
    from ai_edge_litert.interpreter import load_delegate
except ImportError:
    from tflite_runtime.interpreter import load_delegate
options = {"device": sys.argv[2]} if sys.argv[2] else {}
try:
    load_delegate(sys.argv[1], options)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    sys.exit(3)
"""


def probe_edgetpu(device: str = "") -> str | None:
    """Return None if the Edge TPU delegate loads, else a one-line reason."""
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE_CODE, EDGETPU_LIBRARY, device],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        return f"probe of {EDGETPU_LIBRARY} did not finish in {PROBE_TIMEOUT_S:.0f} s"
    if proc.returncode == 0:
        return None
    if proc.returncode < 0:
        return f"probe of {EDGETPU_LIBRARY} crashed with signal {-proc.returncode}"
    lines = proc.stderr.strip().splitlines() or ["unknown error"]
    first = lines[0] if proc.returncode == 3 else lines[-1]
    return f"{EDGETPU_LIBRARY} not usable: {first}"


@dataclass(frozen=True)
class Accelerator:
    """What inference runs on, as reported on the status page."""

    name: str  # "cpu" or "edgetpu"
    runtime: str
    detail: str = ""


def choose_accelerator(requested: str, device: str = "") -> Accelerator:
    """Resolve 'cpu' / 'edgetpu' / 'auto' to what is really usable here."""
    _, _, runtime_name = _import_runtime()
    if requested == "cpu":
        return Accelerator("cpu", runtime_name)
    reason = probe_edgetpu(device)
    if reason is None:
        return Accelerator("edgetpu", runtime_name, device or "first found")
    level = logging.WARNING if requested == "edgetpu" else logging.INFO
    log.log(level, "Edge TPU not used, running on CPU: %s", reason)
    return Accelerator("cpu", runtime_name, reason)


class Model:
    """One loaded TFLite model with a single input and named outputs."""

    def __init__(
        self,
        path: Path,
        threads: int = 1,
        accelerator: Accelerator | None = None,
        edgetpu_device: str = "",
        content: bytes | None = None,
        input_shape: tuple[int, ...] | None = None,
    ) -> None:
        """``content``: the model's bytes when they are not the file's (a copy rewritten in
        memory, see :mod:`maskwatch.vision.blazeface_resize`); ``path`` then only names it.
        ``input_shape``: set before the first allocation (a rewritten network does not
        allocate at its file's shape)."""
        if content is None and not path.is_file():
            raise FileNotFoundError(f"model file not found: {path} (run `maskwatch setup`)")
        interpreter_cls, load_delegate, _ = _import_runtime()
        delegates = []
        if accelerator is not None and accelerator.name == "edgetpu":
            options = {"device": edgetpu_device} if edgetpu_device else {}
            delegates.append(load_delegate(EDGETPU_LIBRARY, options))
        self.path = path
        self._interp = interpreter_cls(
            model_path=None if content is not None else str(path),
            model_content=content,
            num_threads=threads,
            experimental_delegates=delegates or None,
        )
        if input_shape is not None:
            index = self._interp.get_input_details()[0]["index"]
            self._interp.resize_tensor_input(index, input_shape)
        self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]
        self._outputs = self._interp.get_output_details()
        self.input_shape: tuple[int, ...] = tuple(int(v) for v in self._input["shape"])
        self.input_dtype = np.dtype(self._input["dtype"])

    def resize_batch(self, batch: int) -> None:
        """Change the batch dimension, so N faces cost one invoke instead of N."""
        if self.input_shape[0] == batch:
            return
        shape = (batch, *self.input_shape[1:])
        self._interp.resize_tensor_input(self._input["index"], shape)
        self._interp.allocate_tensors()
        self._input = self._interp.get_input_details()[0]
        self._outputs = self._interp.get_output_details()
        self.input_shape = shape

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Map float input to the model's input type using its own quantization parameters."""
        if self.input_dtype == np.float32:
            return x.astype(np.float32, copy=False)
        scale, zero = self._input["quantization"]
        info = np.iinfo(self.input_dtype)
        q = np.round(x / scale + zero)
        return np.clip(q, info.min, info.max).astype(self.input_dtype)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """Invoke on one input tensor; outputs are dequantized float arrays in model order."""
        self._interp.set_tensor(self._input["index"], x)
        self._interp.invoke()
        results = []
        for detail in self._outputs:
            out = self._interp.get_tensor(detail["index"])
            if out.dtype != np.float32:
                scale, zero = detail["quantization"]
                out = (out.astype(np.float32) - zero) * scale
            results.append(out)
        return results
