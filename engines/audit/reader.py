"""Reading audit output folders (what `python -m engines.audit` writes) for the Data set page.

Folders are offered from under one root only: `SALIENCY_AUDITS` (an environment variable) or, by
default, `audits/` in the repository. `open_audit(root, name)` accepts only a name that
`list_audits(root)` lists, so nothing outside the root can be opened, whatever a link says.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from engines.audit import report
from engines.evaluation.clusters import MapClusters, cluster_maps

AUDITS_VARIABLE = "SALIENCY_AUDITS"
DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "audits"
DEPTH = 3
"""Audit folders are looked for this many levels under the root."""

LOWER_IS_BETTER = {"deletion_auc": True, "insertion_auc": False, "road_most_auc": True, "road_least_auc": False,
                   "allegiance_black_auc": True, "allegiance_white_auc": True, "pointing_game": False,
                   "pointing_game_tolerant": False, "relevance_mass": False}
"""For each metric of `report.METRICS`: is a lower value the more faithful (or better localised) map?"""


class AuditFolderError(ValueError):
    """A folder that is not an audit under the root, or whose files cannot be read."""


def audits_root() -> Path:
    """The folder audits are chosen from: $SALIENCY_AUDITS, else `audits/` in the repository."""
    return Path(os.environ.get(AUDITS_VARIABLE) or DEFAULT_ROOT).expanduser()


def is_audit(folder: Path) -> bool:
    return (folder / "summary.json").is_file() and (folder / "results.json").is_file()


def list_audits(root: Path) -> list[str]:
    """The audit folders under `root` (itself included, as "."), up to `DEPTH` levels down, as
    relative paths with "/" separators, sorted; hidden folders and folders inside an audit
    (its maps/ and records/) are skipped."""
    root = Path(root)
    if not root.is_dir():
        return []
    found, frontier = [], [root]
    for _ in range(DEPTH + 1):
        deeper = []
        for folder in frontier:
            if is_audit(folder):
                found.append(folder.relative_to(root).as_posix())
                continue
            try:
                deeper += sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            except OSError:
                continue
        frontier = deeper
    return sorted(found)


@dataclass
class MapFile:
    """One saved map: the model input `image` (H, W, 3) uint8, the `map` (H, W) float32, its
    target class and whether the method is signed."""

    image: np.ndarray
    map: np.ndarray
    target: int
    target_name: str
    signed: bool


@dataclass
class Audit:
    """One audit folder: `run` (model, methods, settings, date…), `summary` (per method, as
    summary.json), `rows` (results.json: one per image × method), `bad_files`, and each image's
    folder under maps/ (`map_folders`, from the records)."""

    name: str
    path: Path
    run: dict
    summary: list[dict]
    rows: list[dict]
    bad_files: list[dict]
    map_folders: dict[str, str] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        return [entry["method"] for entry in self.summary]

    @property
    def model(self) -> str:
        return self.run.get("model") or (self.rows[0]["model"] if self.rows else "")

    def scored(self, method: str, metric: str) -> list[dict]:
        """The error-free rows of `method` that have `metric` (localisation metrics: images with a mask)."""
        return [r for r in self.rows if r["method"] == method and not r.get("error") and r.get(metric) is not None]

    def values(self, method: str, metric: str) -> list[float]:
        return [float(r[metric]) for r in self.scored(method, metric)]

    def extremes(self, method: str, metric: str, count: int) -> tuple[list[dict], list[dict]]:
        """The `count` rows of `method` where the map is most faithful by `metric`, best first,
        and the `count` where it is least, worst first (ties in image order)."""
        rows = sorted(self.scored(method, metric), key=lambda r: r["image"])
        best_first = sorted(rows, key=lambda r: float(r[metric]), reverse=not LOWER_IS_BETTER[metric])
        return best_first[:count], best_first[::-1][:count]

    def classes(self, method: str) -> list[tuple[str, int]]:
        """Predicted classes among the error-free rows of `method`, with their image counts, most first."""
        counts: dict[str, int] = {}
        for row in self.rows:
            if row["method"] == method and not row.get("error"):
                counts[row["predicted_name"]] = counts.get(row["predicted_name"], 0) + 1
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    def images_of(self, method: str, class_name: str, limit: Optional[int] = None) -> list[str]:
        """The images predicted as `class_name` with an error-free map of `method`, in image order;
        with `limit`, an evenly spaced subset of that many."""
        images = [r["image"] for r in self.rows
                  if r["method"] == method and not r.get("error") and r["predicted_name"] == class_name]
        if limit is not None and len(images) > limit:
            images = [images[i] for i in np.linspace(0, len(images) - 1, limit).round().astype(int)]
        return images

    def map_path(self, image: str, method: str) -> Path:
        if image not in self.map_folders:
            raise AuditFolderError(f"{image!r} has no record in {self.name}; run the audit again to make its maps.")
        return self.path / "maps" / self.map_folders[image] / f"{method}.npz"

    def load_map(self, image: str, method: str) -> MapFile:
        """The saved map of `image` by `method` (maps/<image>/<method>.npz)."""
        path = self.map_path(image, method)
        try:
            with np.load(path) as saved:
                info = json.loads(str(saved["settings"]))
                return MapFile(saved["image"].transpose(1, 2, 0), saved["map"], int(saved["target"]),
                               info.get("target_name", ""), bool(info.get("signed", False)))
        except (OSError, KeyError, ValueError) as error:
            raise AuditFolderError(f"The map {path.relative_to(self.path)} cannot be read ({error}).") from error

    def stack(self, images: list[str], method: str) -> np.ndarray:
        """The maps of `images` by `method` as `(N, H, W)`."""
        return np.stack([self.load_map(image, method).map for image in images])  # (N, H, W)


def open_audit(root: Path, name: str) -> Audit:
    """The audit folder `name` (one of `list_audits(root)`); raises AuditFolderError otherwise
    or when its tables cannot be read."""
    if name not in list_audits(root):
        raise AuditFolderError(f"{name!r} is not an audit folder under {root}. Run `python -m engines.audit FOLDER "
                               f"--out {Path(root) / 'NAME'}` to make one.")
    path = Path(root) / name
    try:
        summary = json.loads((path / "summary.json").read_text())
        rows = json.loads((path / "results.json").read_text())
    except (OSError, ValueError) as error:
        raise AuditFolderError(f"The tables of {name} cannot be read ({error}); run the audit again.") from error
    folders = {r["image"]: r["maps"] for r in report.all_records(path) if "maps" in r}
    return Audit(name, path, summary.get("run", {}), summary.get("methods", []), rows, summary.get("bad_files", []),
                 folders)


@dataclass
class ClassClusters:
    """SpRAy on one class of an audit: the `images` clustered (in the order of `clusters.labels`),
    the `clusters` (`engines.evaluation.clusters.MapClusters`), each cluster's mean input image
    `mean_images` (k, H, W, 3) uint8, whether the method is `signed`, and `total` images of the
    class (more than were clustered when a limit applied)."""

    images: list[str]
    clusters: MapClusters
    mean_images: np.ndarray
    signed: bool
    total: int


def cluster_class(audit: Audit, method: str, class_name: str, clusters: Optional[int] = None,
                  limit: int = 500) -> ClassClusters:
    """The maps of `method` on the images predicted as `class_name`, clustered by SpRAy
    (`cluster_maps`, Lapuschkin et al. 2019), at most `limit` of them (evenly spaced)."""
    total = len(audit.images_of(method, class_name))
    images = audit.images_of(method, class_name, limit)
    if not images:
        raise AuditFolderError(f"No image of {method} is predicted as {class_name!r} in {audit.name}.")
    files = [audit.load_map(image, method) for image in images]
    result = cluster_maps(np.stack([f.map for f in files]), None if clusters is None else min(clusters, len(files)))
    pictures = np.stack([f.image for f in files]).astype(np.float64)  # (N, H, W, 3)
    means = np.stack([pictures[result.labels == k].mean(0) for k in range(result.count)])  # (k, H, W, 3)
    return ClassClusters(images, result, means.round().astype(np.uint8), files[0].signed, total)
