"""Peak memory of the largest images `read_image` accepts, on their way to a model.

`python -m engines.data.worst_case` writes each worst case (40 megapixels at 1:1 and at the
20:1 aspect limit, in RGB, RGBA, 16-bit and float greyscale) to a file, then in a fresh process
per case reads it with `read_image` and preprocesses it for EfficientNet-Lite0's input
(`LoadedModel.preprocess`: resize the shorter side to 256, crop 224), and prints the process's
peak resident memory above its baseline after imports (the file's bytes already in memory; the peak is reset through `/proc/self/clear_refs`, so Linux only).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from engines.data.images import MAX_ASPECT, MAX_PIXELS

_CHILD = """
import sys, json
sys.path.insert(0, {root!r})
import torch, engines
from engines.models.catalogue import _spec, LoadedModel
data = open({path!r}, 'rb').read()
spec = _spec('efficientnet_lite0')
loaded = LoadedModel('x', None, [], spec, torch.device('cpu'))
def status(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
import gc; gc.collect()
open('/proc/self/clear_refs', 'w').write('5')  # resets the peak (VmHWM) to the current size
base = status('VmRSS:')
x = loaded.preprocess(engines.read_image(data))
peak = status('VmHWM:')
print(json.dumps({{"baseline_mb": base, "peak_mb": peak, "shape": list(x.shape)}}))
"""


def _pattern(height: int, width: int, high: int, dtype) -> np.ndarray:
    """A (height, width) ramp pattern: cheap to compress, so the file stays under the byte limit."""
    rows = np.arange(height, dtype=np.float64)[:, None] / max(height - 1, 1)
    cols = np.arange(width, dtype=np.float64)[None, :] / max(width - 1, 1)
    return ((rows * 0.5 + cols * 0.5) * high).astype(dtype)


def _cases() -> dict[str, Image.Image]:
    side = int(MAX_PIXELS**0.5)
    short = int((MAX_PIXELS / MAX_ASPECT) ** 0.5)
    square = _pattern(side, side, 255, np.uint8)
    rgb_square = Image.fromarray(np.stack([square, square[::-1], square[:, ::-1]], axis=-1))
    long = _pattern(short, short * MAX_ASPECT, 255, np.uint8)
    return {
        f"RGB {side}×{side}": rgb_square,
        f"RGB {short * MAX_ASPECT}×{short} (20:1)": Image.fromarray(np.stack([long] * 3, axis=-1)),
        f"RGBA {side}×{side}": rgb_square.convert("RGBA"),
        f"16-bit grey {side}×{side}": Image.fromarray(_pattern(side, side, 65535, np.uint16)),
        f"float grey {side}×{side}": Image.fromarray(_pattern(side, side, 255, np.uint8).astype(np.float32)),
    }


def main() -> None:
    root = str(Path(__file__).resolve().parents[2])
    with tempfile.TemporaryDirectory() as folder:
        for name, image in _cases().items():
            path = Path(folder) / "case.tif"
            buffer = io.BytesIO()
            image.save(buffer, format="TIFF", compression="tiff_deflate")
            path.write_bytes(buffer.getvalue())
            done = subprocess.run([sys.executable, "-c", _CHILD.format(root=root, path=str(path))],
                                  capture_output=True, text=True, check=False)
            if done.returncode:
                raise RuntimeError(done.stderr[-2000:])
            report = json.loads(done.stdout.strip().splitlines()[-1])
            print(f"{name:32s} file {len(buffer.getvalue()) / 2**20:6.1f} MB   peak above baseline "
                  f"{report['peak_mb'] - report['baseline_mb']:7.0f} MB   -> {tuple(report['shape'])}")


if __name__ == "__main__":
    main()
