"""Audit a folder of images: explain each one with the chosen methods and score every map.

    python -m engines.audit FOLDER --out DIR [--model efficientnet_lite0] [--methods gradient,occlusion]
        [--set integrated_gradients.steps=8] [--curve-steps 50] [--workers 2] [--include '*.jpg']
        [--limit N] [--fresh] [--ray [local|auto|ADDRESS]] [--actors N]

Every image under FOLDER (recursively; see `engines.audit_files`) is explained for its
predicted class. Each map is scored by the deletion curve (to black) and the insertion curve
(from a blurred start) over `--curve-steps` steps, ROAD most and least relevant first (noisy
linear imputation), the allegiance curve to black and to white (the paper's fractions), and,
where `<stem>.mask.png` lies beside the image, the pointing game (strict and tolerant) and
relevance mass inside that mask (resized and cropped as the model crops the image).

DIR receives `maps/<image>/<method>.png` (the map over the image) and `.npz` (the raw map, the
model input, the target and the settings), one record per image in `records/`, `results.csv`
and `.json` (one row per image × method) and `summary.csv` and `.json` (per method; the JSON
also lists bad files with the reason); the summary is printed as a Markdown table. A run that
is stopped resumes where it stopped: pairs (image, method) already recorded with the same
model and settings are not recomputed, so adding a method later computes only that method.

`--ray` runs the same audit as a Ray Data pipeline over a pool of actors (engines/audit/on_ray.py):
`local` starts Ray on this machine, `auto` or an address joins a running cluster. It writes the
same files, so a run stopped in one mode resumes in the other. Without `--ray` Ray is not imported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from engines.audit import report
from engines.audit.files import ImageFile, ImageFiles, find_images, loader
from engines.audit.image import audit_image, map_folders, pending
from engines.evaluation.metrics import PAPER_FRACTIONS
from engines.models.catalogue import DEFAULT_MODEL, LoadedModel, ModelUnavailable, catalogue, load_model
from engines.core.passes import pick_device
from engines.core.registry import method_names
from engines.cli.settings import parse_settings


def wanted_settings(settings: dict[str, dict], curve_steps: int) -> dict[str, dict]:
    """What a record must hold for a pair to count as done: the method's settings and the
    metrics' settings, as JSON gives them back."""
    metrics = {"curve_steps": curve_steps, "deletion_fill": "black", "insertion_start": "blur",
               "allegiance_fills": ["black", "white"], "allegiance_fractions": list(PAPER_FRACTIONS)}
    return json.loads(json.dumps({m: {"method": s, "metrics": metrics} for m, s in settings.items()}))


def run(loaded: LoadedModel, files: list[ImageFile], out: Path, settings: dict[str, dict], wanted: dict[str, dict],
        folders: dict[str, str], workers: int, bad: list[dict]) -> int:
    """Audit every image with work left, reading ahead in `workers` processes, writing each
    image's record as soon as it is done; unreadable files are appended to `bad`. Returns the
    number of images computed."""
    records = {f.name: report.read_record(out, f.name) for f in files}
    todo = {f.name: pending(records[f.name], f, folders[f.name], wanted) for f in files}
    dataset = ImageFiles([f for f in files if todo[f.name]], loaded.preprocess, loaded.spec.resize, loaded.input_size)
    done = 0
    with tqdm(total=len(dataset), desc="audit", unit="image", file=sys.stderr, dynamic_ncols=True) as bar:
        for item in loader(dataset, workers) if len(dataset) else []:
            name = item.file.name
            bar.set_postfix_str(name, refresh=False)
            if item.error is not None:
                bad.append({"file": name, "reason": item.error})
                report.record_path(out, name).unlink(missing_ok=True)  # a file that changed into a bad one
            else:
                report.write_record(out, audit_image(loaded, item, todo[name], records[name], settings, wanted, out,
                                                     folders[name]))
                done += 1
            bar.update()
    return done


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engines.audit", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder of images (searched recursively)")
    parser.add_argument("--out", type=Path, required=True, help="folder for maps, records and tables")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"catalogue model (default {DEFAULT_MODEL})")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu or cuda")
    parser.add_argument("--methods", default=",".join(method_names()),
                        help="comma-separated methods (default: all registered)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.PARAM=VALUE",
                        help="a method's setting, e.g. integrated_gradients.steps=8 (repeatable)")
    parser.add_argument("--curve-steps", type=int, default=50, help="deletion/insertion curve steps (default 50)")
    parser.add_argument("--workers", type=int, default=2, help="processes reading images ahead (default 2; 0: none)")
    parser.add_argument("--include", action="append", default=[], metavar="PATTERN",
                        help="only images whose relative path matches this glob, e.g. '*.jpg' (repeatable)")
    parser.add_argument("--limit", type=int, help="audit only the first N image files (by relative path; bad ones count)")
    parser.add_argument("--fresh", action="store_true", help="delete this folder's previous audit results first")
    parser.add_argument("--ray", nargs="?", const="local", metavar="local|auto|ADDRESS",
                        help="run on Ray: local starts an instance here (the default when --ray has no value); "
                             "auto or HOST:PORT joins a running cluster (`ray start --head`)")
    parser.add_argument("--actors", type=int, help="with --ray: actors, each loading the model once (default: one "
                                                   "per GPU of the cluster, else one per CPU)")
    return parser


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple[list[str], dict[str, dict]]:
    """The methods and their full settings; exits with a usage error naming what is wrong."""
    methods = list(dict.fromkeys(m.strip() for m in args.methods.split(",") if m.strip()))
    unknown = [m for m in methods if m not in method_names()]
    if unknown or not methods:
        problem = f"unknown method {', '.join(unknown)}" if unknown else "--methods names no method"
        parser.error(f"{problem}; known methods: {', '.join(method_names())}")
    try:
        settings = parse_settings(args.set, methods)
        pick_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    if args.model not in catalogue():
        parser.error(f"unknown model {args.model!r}; the catalogue has: {', '.join(catalogue())}")
    if not args.folder.is_dir():
        parser.error(f"{args.folder} is not a folder")
    for flag, value, low in (("--curve-steps", args.curve_steps, 1), ("--workers", args.workers, 0),
                             ("--limit", args.limit, 1), ("--actors", args.actors, 1)):
        if value is not None and value < low:
            parser.error(f"{flag} must be at least {low}; got {value}")
    if args.actors is not None and not args.ray:
        parser.error("--actors needs --ray")
    return methods, settings


def audit_on_ray(parser: argparse.ArgumentParser, args: argparse.Namespace, files: list[ImageFile],
                 settings: dict[str, dict], wanted: dict[str, dict], folders: dict[str, str],
                 bad: list[dict]) -> tuple[int, str]:
    """The audit on Ray (imported only here); a cluster that cannot be reached is a usage error."""
    from engines.audit import on_ray

    started = False
    try:
        started = on_ray.connect(args.ray)
        return on_ray.run(args.model, files, args.out, settings, wanted, folders, bad, device=args.device,
                          actors=args.actors)
    except on_ray.RayUnavailable as error:
        parser.error(str(error))
    finally:
        if started:  # an instance this run started; one the caller had connected to stays up
            on_ray.ray.shutdown()


def main(argv: Optional[list[str]] = None) -> int:
    """Run the audit; returns 0, or 130 when interrupted (the next run resumes). Usage errors
    (a bad option, an output folder made with another model) exit with status 2 before any work."""
    parser = build_parser()
    args = parser.parse_args(argv)
    methods, settings = check_arguments(parser, args)
    try:
        if not args.fresh:
            report.check_model(args.out, args.model)
        loaded = load_model(args.model, "cpu" if args.ray else args.device)  # on Ray the actors load their own
    except (report.RunDirError, ModelUnavailable) as error:
        parser.error(str(error))
    if args.curve_steps > loaded.input_size**2:
        parser.error(f"--curve-steps must be at most {loaded.input_size**2} (the input's pixels)")
    if args.fresh:
        report.clear(args.out)
    report.claim(args.out, loaded.name)
    found = find_images(args.folder, exclude=args.out, include=args.include)
    folders = map_folders(found)
    files = found[: args.limit]
    wanted = wanted_settings(settings, args.curve_steps)
    began, bad, done, device = time.perf_counter(), [], None, str(loaded.device)
    try:
        if args.ray:
            done, device = audit_on_ray(parser, args, files, settings, wanted, folders, bad)
        else:
            done = run(loaded, files, args.out, settings, wanted, folders, args.workers, bad)
    except KeyboardInterrupt:
        pass
    info = {"model": loaded.name, "device": device, "folder": str(args.folder.resolve()),
            "methods": methods, "settings": settings, "metrics": next(iter(wanted.values()))["metrics"],
            "images_found": len(found), "limit": args.limit, "finished": done is not None,
            "seconds": round(time.perf_counter() - began, 1),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    summary = report.write_reports(args.out, methods, wanted, info, bad)
    print(report.markdown(summary["methods"]))
    for problem in summary["bad_files"]:
        print(f"- skipped {problem['file']}: {problem['reason']}")
    if done is None:
        print("Interrupted: the tables hold what was done. Run the same command again to resume.", file=sys.stderr)
        return 130
    print(f"{len(files)} images, {done} with new work; results in {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
