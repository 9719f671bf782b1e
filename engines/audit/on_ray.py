"""The folder audit as a Ray Data pipeline: `python -m engines.audit FOLDER --out DIR --ray [local|auto|ADDRESS]`.

The driver (this process) lists the images and what each still lacks, exactly as the
single-process audit does (`run.py`); Ray Data then streams them through two stages:

1. **read**: tasks read each file and apply the model's preprocessing (`files.ImageFiles`, the
   same code the single-process audit's `DataLoader` workers run);
2. **audit**: a fixed pool of actors, each loading the model once (one GPU per actor where the
   cluster has GPUs, one CPU otherwise), runs `image.audit_image` (the single-process audit's
   own per-image function) and sends back the image's record and map files.

The driver writes every record and map into DIR as it arrives, so DIR needs to be on the driver
only; FOLDER must be readable at the same path on every node (a shared file system). Records
are the single-process audit's, so a stopped run resumes with either mode.

An actor that dies (killed, out of memory) costs only the image it had in flight: Ray restarts
it and runs that image again once (`max_task_retries=1`); an image whose second attempt also dies is
reported as a bad file with the reason and left without a record, so the next run tries again.
Without `--ray` nothing imports this module, so Ray is needed only for this mode.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import ray
from tqdm import tqdm

from engines.audit import report
from engines.audit.files import ImageFile, ImageFiles, Loaded
from engines.audit.image import audit_image, pending
from engines.models.catalogue import LoadedModel, catalogue, load_model

ROOT = Path(__file__).resolve().parents[2]
IN_FLIGHT = 1
"""Images queued on one actor at a time. One: a dying actor costs only the image it was computing
(a second image queued behind it would spend its one retry on another image's death); the gap
between two images is a scheduling round trip, milliseconds against seconds of passes."""

READERS = 2
"""Read tasks at a time. They ask for no CPU, so that actors holding every CPU never starve them,
and this cap is what keeps Ray from starting a worker process (each importing torch) per file."""

DIED = ("The worker auditing this image died twice (killed, or out of memory); the image was skipped "
        "and will be tried again by the next run.")


class RayUnavailable(RuntimeError):
    """The Ray instance named by --ray cannot be started or joined."""


def connect(where: str, cpus: Optional[int] = None) -> bool:
    """Start a local Ray instance (`where == "local"`, with `cpus` CPUs, default all) or join a
    running cluster ("auto", or an address such as "10.0.0.1:6379" or "ray://host:10001").
    Returns whether it connected (False: this process was already connected). Workers import `engines` from this
    repository's path (the same path on every node of a cluster)."""
    if ray.is_initialized():
        return False
    env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}}
    try:
        if where == "local":
            ray.init(num_cpus=cpus, include_dashboard=False, runtime_env=env, logging_level=logging.WARNING,
                     log_to_driver=False)
        else:
            ray.init(address=where, runtime_env=env, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise RayUnavailable(
            f"No Ray cluster at {where!r} ({error}). Start one with `ray start --head` (and `ray start --address "
            f"HEAD:6379` on the other machines), or use --ray local to start one on this machine.") from error
    return True


def pool(device: str, actors: Optional[int]) -> tuple[int, float]:
    """How many actors and GPUs per actor: one GPU each when the cluster has GPUs (and `device`
    is auto or cuda), otherwise one CPU each; `actors` defaults to every GPU, else every CPU."""
    resources = ray.cluster_resources()
    gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
    if device == "cuda" and not gpus:
        raise RayUnavailable("--device cuda was asked for but the Ray cluster has no GPU; use --device auto or cpu.")
    use_gpu = gpus > 0 and device in ("auto", "cuda")
    count = actors or (gpus if use_gpu else max(1, cpus))
    return count, 1.0 if use_gpu else 0.0


def _geometry_only(model: str) -> LoadedModel:
    """A LoadedModel without weights: enough for `preprocess`, which needs the spec's geometry only."""
    return LoadedModel(model, None, [], catalogue()[model], None)


def read(row: dict, model: str) -> dict:
    """The read stage: one listed file as the single-process audit's `Loaded` item (the model
    input, its mask, or the reason it cannot be read), pickled, because its optional tensors have
    no fixed Arrow type."""
    spec = catalogue()[model]
    file = ImageFile(row["name"], Path(row["path"]), Path(row["mask"]) if row["mask"] else None)
    item = ImageFiles([file], _geometry_only(model).preprocess, spec.resize, spec.input_size)[0]
    return {"name": row["name"], "item": pickle.dumps(item), "job": row["job"]}


class AuditActor:
    """One actor of the audit stage: loads the model once, then audits one image per call with
    `audit_image` into a scratch folder and hands back the record and the map files' bytes."""

    def __init__(self, model: str, settings: dict, wanted: dict):
        import torch

        torch.set_num_threads(max(1, int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1))))
        self.loaded = load_model(model, "cuda" if ray.get_gpu_ids() else "cpu")
        self.settings, self.wanted = settings, wanted

    def audit(self, item: Loaded, job: dict) -> dict:
        """One image: {"record": JSON or "", "maps": pickled {path under DIR: bytes}, "error": ""}."""
        if item.error is not None:
            return {"record": "", "maps": pickle.dumps({}), "error": item.error}
        with tempfile.TemporaryDirectory(prefix="audit-") as scratch:
            try:
                record = audit_image(self.loaded, item, job["methods"], job["record"], self.settings, self.wanted,
                                     Path(scratch), job["folder"])
            except Exception as error:  # a bug or an unexpected file: report this image, the run goes on
                return {"record": "", "maps": pickle.dumps({}), "error": f"The audit failed: {type(error).__name__}: "
                                                                          f"{error}"}
            files = {p.relative_to(scratch).as_posix(): p.read_bytes() for p in Path(scratch).rglob("*") if p.is_file()}
        return {"record": report.to_json(record), "maps": pickle.dumps(files), "error": ""}

    def __call__(self, batch: dict) -> dict:
        out = {"name": [], "record": [], "maps": [], "error": []}
        for name, item, job in zip(batch["name"], batch["item"], batch["job"]):
            result = self.audit(pickle.loads(item), json.loads(job))
            out["name"].append(name)
            for key in ("record", "maps", "error"):
                out[key].append(result[key])
        return {key: np.array(values, dtype=object) for key, values in out.items()}


def run(model: str, files: list[ImageFile], out: Path, settings: dict[str, dict], wanted: dict[str, dict],
        folders: dict[str, str], bad: list[dict], *, device: str = "auto", actors: Optional[int] = None,
        actor_class: type = AuditActor) -> tuple[int, str]:
    """Audit every image with work left on the connected Ray instance, writing each image's
    record and maps into `out` as they arrive; unreadable images and images lost with their
    actor twice are appended to `bad`. Returns (images computed, a description of the pool).
    `actor_class` is the audit stage's actor (tests pass a subclass that dies on purpose)."""
    import ray.data

    records = {f.name: report.read_record(out, f.name) for f in files}
    jobs = []
    for f in files:
        methods = pending(records[f.name], f, folders[f.name], wanted)
        if methods:
            job = {"methods": methods, "record": records[f.name], "folder": folders[f.name]}
            jobs.append({"name": f.name, "path": str(f.path.resolve()),
                         "mask": str(f.mask.resolve()) if f.mask else "", "job": report.to_json(job)})
    count, gpus = pool(device, actors)
    described = f"ray: {count} {'GPU' if gpus else 'CPU'} actor{'s' if count > 1 else ''}"
    if not jobs:
        return 0, described
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # not a line per dataset start and end
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # one bar: ours, with images/s and the time left
    context.max_errored_blocks = len(jobs)  # a block lost twice is one image: report it, go on
    context.execution_options.preserve_order = False
    dataset = (ray.data.from_items(jobs, override_num_blocks=len(jobs))  # one image a block
               .map(read, fn_kwargs={"model": model}, num_cpus=0, compute=ray.data.TaskPoolStrategy(size=READERS)))
    with warnings.catch_warnings():  # Ray has no named parameter yet for the restarts and retries
        warnings.filterwarnings("ignore", message="`ray_remote_args` is deprecated")
        dataset = dataset.map_batches(
            actor_class, fn_constructor_kwargs={"model": model, "settings": settings, "wanted": wanted},
            batch_size=1, num_cpus=0 if gpus else 1, num_gpus=gpus,
            compute=ray.data.ActorPoolStrategy(size=count, max_tasks_in_flight_per_actor=IN_FLIGHT),
            max_restarts=-1, max_task_retries=1)
    done, seen = 0, set()
    with tqdm(total=len(jobs), desc=described, unit="image", file=sys.stderr, dynamic_ncols=True) as bar:
        for row in dataset.iter_rows():
            name = row["name"]
            seen.add(name)
            bar.set_postfix_str(name, refresh=False)
            if row["error"]:
                bad.append({"file": name, "reason": row["error"]})
                report.record_path(out, name).unlink(missing_ok=True)  # a file that changed into a bad one
            else:
                for path, data in pickle.loads(row["maps"]).items():
                    report.write_atomic(out / path, data)
                report.write_record(out, json.loads(row["record"]))
                done += 1
            bar.update()
    bad.extend({"file": job["name"], "reason": DIED} for job in jobs if job["name"] not in seen)
    return done, described
