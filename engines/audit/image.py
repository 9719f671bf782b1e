"""One image's audit: its maps, their metrics by the engines' own functions, its files and record.

`audit_image` explains one loaded image for the methods it still lacks, scores each map
(deletion, insertion, ROAD most and least relevant first, allegiance to black and to white,
and the pointing game, strict and with Zhang et al.'s tolerance, and relevance mass inside the
mask where there is one), writes `maps/<image>/<method>.png` and `.npz`, and returns
the image's record for `audit_report`. A method that fails (out of memory, its own error) is
recorded with its error; the other methods go on.
"""

from __future__ import annotations

import io
import json
import time
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Optional

import numpy as np
import torch
from PIL import Image

from engines.audit import report
from engines.audit.files import ImageFile, Loaded
from engines.core.explain import Explanation, explain, explain_many, predict
from engines.evaluation.metrics import (
    allegiance_curve,
    deletion_curve,
    insertion_curve,
    pointing_game,
    pointing_tolerance,
    relevance_mass,
)
from engines.evaluation.road import road_curve
from engines.models.catalogue import LoadedModel
from engines.display.overlays import image_array, overlay_rgb


def file_stamp(file: ImageFile) -> dict:
    """Size and modification time: a changed file is audited again."""
    stat = file.path.stat()
    return {"bytes": stat.st_size, "modified_ns": stat.st_mtime_ns}


def pending(record: Optional[dict], file: ImageFile, folder: str, wanted: dict[str, dict]) -> list[str]:
    """The methods still to run on an image: all, unless its record is of the same file and map
    folder, then those without an error-free entry made with the wanted settings."""
    if record is None or record.get("file") != file_stamp(file) or record.get("maps") != folder:
        return list(wanted)
    done = record["methods"]
    return [m for m in wanted if m not in done or done[m]["settings"] != wanted[m] or done[m].get("error")]


def map_folders(files: list[ImageFile]) -> dict[str, str]:
    """Each image's folder under maps/: its relative path without suffix, or with it where two
    images in one folder share a stem (a.png and a.jpg)."""
    stems = {f.name: PurePosixPath(f.name).with_suffix("").as_posix() for f in files}
    shared = Counter(stems.values())
    return {name: name if shared[stem] > 1 else stem for name, stem in stems.items()}


def explain_each(loaded: LoadedModel, x: torch.Tensor, methods: list[str], settings: dict[str, dict]):
    """The maps of one image `(1, 3, S, S)` for `methods`, sharing passes; when that fails (out
    of memory, a method's own error) each method runs alone, so one failure costs one method.
    Returns ({method: Explanation}, {method: error message})."""
    try:
        return explain_many(loaded, x, methods, None, {m: settings[m] for m in methods}), {}
    except Exception:
        results, errors = {}, {}
        for method in methods:
            try:
                results[method] = explain(loaded, x, method, **settings[method])
            except Exception as error:
                errors[method] = f"{type(error).__name__}: {error}"
                if loaded.device.type == "cuda":
                    torch.cuda.empty_cache()
        return results, errors


def score(loaded: LoadedModel, x: torch.Tensor, mask: Optional[torch.Tensor], result: Explanation,
          steps: int) -> dict:
    """The metrics of one map `(1, S, S)` of image `x` `(1, 3, S, S)`, all by the engines' functions."""
    began = time.perf_counter()
    saliency = result.map
    entry = {
        "target": int(result.target[0]),
        "deletion_auc": float(deletion_curve(loaded, x, saliency, steps=steps, fill="black").auc[0]),
        "insertion_auc": float(insertion_curve(loaded, x, saliency, steps=steps).auc[0]),
        "road_most_auc": float(road_curve(loaded, x, saliency, "most").auc[0]),
        "road_least_auc": float(road_curve(loaded, x, saliency, "least").auc[0]),
        "allegiance_black_auc": float(allegiance_curve(loaded, x, saliency, fill="black").auc[0]),
        "allegiance_white_auc": float(allegiance_curve(loaded, x, saliency, fill="white").auc[0]),
        "pointing_game": None if mask is None else bool(pointing_game(saliency, mask)[0]),
        "pointing_game_tolerant": None if mask is None else bool(
            pointing_game(saliency, mask, tolerance=pointing_tolerance(tuple(x.shape[2:])))[0]),
        "relevance_mass": None if mask is None else float(relevance_mass(saliency, mask)[0]),
        "seconds": result.seconds,
    }
    entry["curve_seconds"] = time.perf_counter() - began
    return entry


def save_map(folder: Path, x: torch.Tensor, result: Explanation, info: dict) -> None:
    """`<method>.png` (the map over the image) and `<method>.npz` (map float32 (H, W), model input
    uint8 (3, H, W) = round(255 · x), target, settings as a JSON string)."""
    saliency = result.map[0].numpy()  # (H, W)
    picture = image_array(x)  # (H, W, 3)
    png = io.BytesIO()
    Image.fromarray(overlay_rgb(picture, saliency, signed=result.signed)).save(png, format="PNG")
    report.write_atomic(folder / f"{result.method}.png", png.getvalue())
    npz = io.BytesIO()
    np.savez_compressed(npz, map=saliency.astype(np.float32), image=picture.transpose(2, 0, 1),
                        target=np.int64(result.target[0]), settings=np.array(json.dumps(info)))
    report.write_atomic(folder / f"{result.method}.npz", npz.getvalue())


def audit_image(loaded: LoadedModel, item: Loaded, methods: list[str], record: Optional[dict], settings: dict[str, dict],
                wanted: dict[str, dict], out: Path, folder: str) -> dict:
    """Explain and score one loaded image for `methods`, write its maps, and return its record:
    the entries of `record` still valid for this file, plus the new ones (metrics or error)."""
    x = item.x[None]  # (1, 3, S, S)
    probabilities = predict(loaded, x).probabilities[0]
    predicted = int(probabilities.argmax())
    stamp = file_stamp(item.file)
    fresh = record is None or record.get("file") != stamp or record.get("maps") != folder
    entries = {} if fresh else dict(record["methods"])
    results, errors = explain_each(loaded, x, methods, settings)
    for method in methods:
        if method in errors:
            entries[method] = {"settings": wanted[method], "error": errors[method]}
            continue
        try:
            entry = score(loaded, x, item.mask, results[method], wanted[method]["metrics"]["curve_steps"])
            info = {"image": item.file.name, "model": loaded.name, "method": method, "settings": settings[method],
                    "target": entry["target"], "target_name": loaded.categories[entry["target"]],
                    "signed": results[method].signed}
            save_map(out / "maps" / folder, x, results[method], info)
            entries[method] = {"settings": wanted[method], **entry}
        except Exception as error:  # out of memory, or a metric failing on this map: record it, go on
            entries[method] = {"settings": wanted[method], "error": f"{type(error).__name__}: {error}"}
    mask = item.file.mask
    return {"image": item.file.name, "model": loaded.name, "file": stamp, "maps": folder,
            "mask": None if mask is None else PurePosixPath(item.file.name).with_name(mask.name).as_posix(),
            "mask_error": item.mask_error,
            "prediction": {"class": predicted, "name": loaded.categories[predicted],
                           "probability": float(probabilities[predicted])},
            "methods": entries}
