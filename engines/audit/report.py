"""The audit's results on disk: one record per image, and the tables rebuilt from them.

`DIR/records/<image>.json` holds, per method, the settings used and the metrics (or the error);
it is written atomically (a temporary file, then `os.replace`) after each image, so an
interrupted run loses at most the image in hand. `DIR/run.json` names the model the folder
belongs to. `results.csv/.json` (one row per image × method) and `summary.csv/.json` (per
method: mean, standard deviation and standard error of each metric) are rebuilt from the
records at the end of every run, so they include the images of earlier runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Optional

METRICS = ("deletion_auc", "insertion_auc", "road_most_auc", "road_least_auc", "allegiance_black_auc",
           "allegiance_white_auc", "pointing_game", "pointing_game_tolerant", "relevance_mass")
"""Metric columns, in table order: deletion, ROAD most relevant first and allegiance lower is
better, the others higher. The pointing games and relevance mass need a mask."""

MASK_METRICS = ("pointing_game", "pointing_game_tolerant", "relevance_mass")

COLUMNS = ("image", "method", "model", "predicted_class", "predicted_name", "probability", "target", *METRICS,
           "seconds", "curve_seconds", "error")
"""Columns of results.csv; `seconds` is the map's time, `curve_seconds` its metrics' time."""

OUTPUTS = ("records", "maps", "run.json", "results.csv", "results.json", "summary.csv", "summary.json")
"""Everything the audit writes in its folder (and all that `--fresh` deletes)."""

_HEADINGS = {"deletion_auc": "deletion AUC ↓", "insertion_auc": "insertion AUC ↑",
             "road_most_auc": "ROAD MoRF ↓", "road_least_auc": "ROAD LeRF ↑",
             "allegiance_black_auc": "allegiance black ↓", "allegiance_white_auc": "allegiance white ↓",
             "pointing_game": "pointing game ↑", "pointing_game_tolerant": "pointing game ±15 px@224 ↑",
             "relevance_mass": "relevance mass ↑"}


class RunDirError(ValueError):
    """The output folder belongs to another run; the message says what to do."""


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `path` whole or not at all: into a temporary file beside it, then `os.replace`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(temporary, path)


def clean(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None, inside lists and dicts (valid JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(item) for item in value]
    return value


def to_json(value: Any) -> str:
    return json.dumps(clean(value), indent=1, ensure_ascii=False, allow_nan=False)


# --------------------------------------------------------------------------- the run folder


def clear(out: Path) -> None:
    """Delete the audit's own outputs in `out` (nothing else there)."""
    for name in OUTPUTS:
        path = out / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def check_model(out: Path, model: str) -> None:
    """RunDirError if `out` holds results made with a model other than `model`."""
    path = out / "run.json"
    if not path.is_file():
        return
    recorded = json.loads(path.read_text()).get("model")
    if recorded != model:
        raise RunDirError(
            f"{out} holds an audit made with the model {recorded!r}, not {model!r}; its results cannot be "
            f"mixed. Pass another --out, or add --fresh to delete the previous results in {out}."
        )


def claim(out: Path, model: str) -> None:
    """Mark `out` as this model's run folder (run.json)."""
    if not (out / "run.json").is_file():
        write_atomic(out / "run.json", to_json({"model": model}))


# --------------------------------------------------------------------------- records


def record_path(out: Path, image: str) -> Path:
    """Where an image's record lives: `records/<relative path>.json`."""
    return out / "records" / f"{image}.json"


def read_record(out: Path, image: str) -> Optional[dict]:
    """An image's record, or None when there is none (or it cannot be read)."""
    try:
        return json.loads(record_path(out, image).read_text())
    except (OSError, ValueError):
        return None


def write_record(out: Path, record: dict) -> None:
    write_atomic(record_path(out, record["image"]), to_json(record))


def all_records(out: Path) -> list[dict]:
    """Every readable record in `out`, sorted by image."""
    found = []
    for path in (out / "records").rglob("*.json"):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda r: r["image"])


def rows(records: list[dict], wanted: dict[str, dict]) -> list[dict]:
    """One row per image × method of `wanted` ({method: settings}) whose record entry was made
    with those settings; entries with other settings are left out."""
    table = []
    for record in records:
        for method, settings in wanted.items():
            entry = record["methods"].get(method)
            if entry is None or entry["settings"] != settings:
                continue
            prediction = record["prediction"]
            row = {"image": record["image"], "method": method, "model": record["model"],
                   "predicted_class": prediction["class"], "predicted_name": prediction["name"],
                   "probability": prediction["probability"]}
            row.update({column: entry.get(column) for column in COLUMNS if column not in row})
            table.append(row)
    return table


# --------------------------------------------------------------------------- tables


def _stats(values: list[float]) -> dict[str, Optional[float]]:
    """Mean, sample standard deviation and standard error of `values` (None where undefined)."""
    n = len(values)
    mean = sum(values) / n if n else None
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "stderr": std / math.sqrt(n) if std is not None else None}


def summarise(table: list[dict], methods: list[str]) -> list[dict]:
    """Per method: images done, errors, and `_stats` of each metric over the rows that have it
    (localisation metrics: images with a mask), plus mean seconds (map, and metrics)."""
    summary = []
    for method in methods:
        done = [row for row in table if row["method"] == method and not row["error"]]
        entry = {"method": method, "images": len(done),
                 "errors": sum(1 for row in table if row["method"] == method and row["error"])}
        for column in (*METRICS, "seconds", "curve_seconds"):
            values = [float(row[column]) for row in done if row[column] is not None]
            entry[column] = _stats(values)
        summary.append(entry)
    return summary


def flat_summary(summary: list[dict]) -> list[dict]:
    """The summary as flat rows for CSV: `<metric>_mean`, `_std`, `_stderr`, `_n`."""
    flat = []
    for entry in summary:
        row = {"method": entry["method"], "images": entry["images"], "errors": entry["errors"]}
        for column in (*METRICS, "seconds", "curve_seconds"):
            row.update({f"{column}_{key}": value for key, value in entry[column].items()})
        flat.append(row)
    return flat


def csv_text(table: list[dict], columns: Optional[tuple[str, ...]] = None) -> str:
    """Rows as CSV; None (missing, or NaN) is an empty cell."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns or (table[0] if table else ())), lineterminator="\n")
    writer.writeheader()
    writer.writerows(clean(table))
    return buffer.getvalue()


def markdown(summary: list[dict]) -> str:
    """The summary as a Markdown table: mean ± standard error per metric (with the number of
    images where fewer have it: those with masks), and the mean seconds per map (passes that
    methods share are charged to the first of them)."""
    head = ["method", "images", *_HEADINGS.values(), "seconds per map"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in summary:
        cells = [entry["method"], str(entry["images"])]
        for column in METRICS:
            stats = entry[column]
            cell = "" if stats["mean"] is None else f"{stats['mean']:.3f}"
            if stats["stderr"] is not None:
                cell += f" ± {stats['stderr']:.3f}"
            if stats["n"] and stats["n"] != entry["images"]:
                cell += f" (n = {stats['n']})"
            cells.append(cell)
        seconds = entry["seconds"]["mean"]
        cells.append("" if seconds is None else f"{seconds:.3f}" if seconds >= 0.0005 else "< 0.001")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def bad_files(records: list[dict], unreadable: list[dict]) -> list[dict]:
    """Files skipped, with the reason: the images that could not be read in this run, and masks
    that could not be used (their images were audited without them), sorted by file."""
    masks = [{"file": r["mask"], "reason": f"{r['mask_error']} The image was audited without its mask."}
             for r in records if r.get("mask_error")]
    return sorted(unreadable + masks, key=lambda problem: problem["file"])


def write_reports(out: Path, methods: list[str], wanted: dict[str, dict], run: dict,
                  unreadable: list[dict]) -> dict:
    """Rebuild results.csv/.json and summary.csv/.json from every record in `out`; returns the
    summary ({"run", "methods", "bad_files"})."""
    records = all_records(out)
    table = rows(records, wanted)
    summary = summarise(table, methods)
    write_atomic(out / "results.csv", csv_text(table, COLUMNS))
    write_atomic(out / "results.json", to_json(table))
    write_atomic(out / "summary.csv", csv_text(flat_summary(summary)))
    result = {"run": run, "methods": summary, "bad_files": bad_files(records, unreadable)}
    write_atomic(out / "summary.json", to_json(result))
    return result
