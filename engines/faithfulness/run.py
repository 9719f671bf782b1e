"""Faithfulness: every method and its peers' implementations, scored by the same curves.

    python -m engines.faithfulness [--quick] [--shapes 40] [--views 2] [--families linear,mask]
                                   [--methods a,b] [--set oise.queries=512] [--no-photo-road]
                                   [--json faithfulness.json] [--markdown faithfulness.md]

For each registered method (or those asked for), its map and the map of each installed peer that
computes the same thing with the same settings (`method_info(m).peers`, where `comparable` says
so: Captum for the linear maps and occlusion, TorchRay for extremal perturbation and RISE,
pytorch-grad-cam for CAM maps where registered) are computed one image at a time, timed, and
scored by `engines.faithfulness.scoring.score_maps`: deletion, insertion and ROAD both ways on
every image, and on the shapes test set (which has object masks) the pointing game, strict and
tolerant, and relevance mass. Image sets: the shapes test set on the shapes CNN, and views of the
shipped photos (`data.photo_views`) on EfficientNet-Lite0. Every score is reported as mean ±
standard error over the images, with the time per map (after untimed calls on the first image:
ours until the chunk tuner has settled, as on a running server, and each peer once; the process's CPU seconds on the one
thread `--threads` leaves by default: the work each map costs, which another program on the
machine cannot inflate, and which a run paused with SIGSTOP keeps); one markdown table per family and image
set, then a verdict per family: does our best map match or beat the best peer's on insertion
and ROAD within one standard error, at no more than the peer's time?

`--quick` runs every method on its quick settings on at most 3 shapes images and 1 photo: a smoke test.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable
from typing import Any, Optional

import torch

from engines.bench.timing import warm_ours
from engines.cli.settings import parse_settings
from engines.core.explain import explain, predict
from engines.core.registry import method_info, method_names
from engines.core.runtime import set_threads
from engines.evaluation.road import ROAD_FRACTIONS
from engines.faithfulness import data
from engines.faithfulness.scoring import HEADINGS, LOWER_IS_BETTER, METRICS, mean_and_error, score_maps
from engines.models.catalogue import load_model

PHOTO_ROAD_FRACTIONS = (0.0, 0.2, 0.4, 0.6, 0.8)
"""ROAD's points on 224² photos: every other one of Rong et al.'s, as the imputation is the slowest step."""


def contenders(method: str, settings: dict, size: tuple[int, int]) -> list[tuple[str, Optional[Any]]]:
    """`[("ours", None), (peer label, peer), …]`: our method and every installed peer that computes
    the same map with these settings on `(H, W)` images."""
    info = method_info(method)
    found: list[tuple[str, Optional[Any]]] = [("ours", None)]
    for peer in info.peers:
        if peer.available() and peer.comparable(settings, size):
            found.append((peer.label, peer))
    return found


def map_call(model, x: torch.Tensor, target: int, method: str, settings: dict, peer) -> Callable[[], torch.Tensor]:
    """A call giving one map `(1, H, W)` of image `x` `(1, 3, H, W)`: ours (`explain`) or the peer's."""
    if peer is None:
        return lambda: explain(model, x, method, target, **settings).map
    call = peer.build(model, x, target, settings, peer.default)
    return lambda: peer.to_map(call(), settings).detach().float().reshape(1, *x.shape[2:])


def score_method(model, images: data.ImageSet, method: str, settings: dict, *, steps: int, road_fractions,
                 road: bool, log: Callable[[str], None]) -> dict[str, dict]:
    """`{contender: {"metrics": {metric: [mean, se]}, "seconds": [mean, se], "n": n, "errors": k}}`."""
    x_all = images.images
    size = tuple(x_all.shape[2:])
    targets = predict(model, x_all).logits.argmax(dim=1)
    results = {}
    for label, peer in contenders(method, settings, size):
        maps, seconds, errors = [], [], 0
        try:  # untimed, on the first image: ours until the chunk tuner has settled, a peer once
            warm = map_call(model, x_all[:1], int(targets[0]), method, settings, peer)
            warm_ours(warm, model, most=10) if peer is None else warm()
        except Exception:  # noqa: BLE001 - a refusal is counted below, image by image
            pass
        for i in range(len(x_all)):
            x = x_all[i : i + 1]
            try:
                call = map_call(model, x, int(targets[i]), method, settings, peer)
                began = time.process_time()
                maps.append(call().cpu())
                seconds.append(time.process_time() - began)
            except Exception as error:  # a peer refusing an input: counted, the others go on
                errors += 1
                maps.append(None)
                log(f"  {method} / {label} on {images.names[i]}: {type(error).__name__}: {error}")
        kept = [i for i, m in enumerate(maps) if m is not None]
        entry: dict[str, Any] = {"n": len(kept), "errors": errors, "metrics": {},
                                 "seconds": list(mean_and_error(torch.tensor(seconds or [math.nan])))}
        if kept:
            stacked = torch.cat([maps[i] for i in kept])  # (n, H, W)
            masks = images.masks[kept] if images.masks is not None else None
            scores = score_maps(model, x_all[kept], stacked, targets[kept], masks, steps=steps, road=road,
                                road_fractions=road_fractions)
            entry["metrics"] = {name: list(mean_and_error(values)) for name, values in scores.items()}
        results[label] = entry
        shown = ", ".join(f"{k} {v[0]:.3f}" for k, v in entry["metrics"].items())
        log(f"  {images.name} {method} [{label}]: {shown}; {entry['seconds'][0] * 1000:.0f} ms/map")
    return results


def _cell(pair: list, digits: int = 3) -> str:
    mean, error = pair
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if error is None or (isinstance(error, float) and math.isnan(error)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {error:.{digits}f}"


def markdown(report: dict) -> str:
    """One table per family and image set (rows: method × implementation), then the verdicts."""
    lines = []
    for family, sets in report["families"].items():
        lines.append(f"### {family}\n")
        for set_name, methods in sets.items():
            metrics = [m for m in METRICS if any(m in c["metrics"] for r in methods.values() for c in r.values())]
            lines.append(f"**{set_name}** ({report['sets'][set_name]})\n")
            lines.append("| method | implementation | " + " | ".join(HEADINGS[m] for m in metrics) + " | ms / map |")
            lines.append("|---" * (len(metrics) + 3) + "|")
            for method, rows in methods.items():
                for label, row in rows.items():
                    cells = [_cell(row["metrics"].get(m, [None, None])) for m in metrics]
                    seconds = row["seconds"]
                    time_cell = "–" if seconds[0] is None else f"{1000 * seconds[0]:.0f}"
                    lines.append(f"| {method} | {label} | " + " | ".join(cells) + f" | {time_cell} |")
            lines.append("")
        for verdict in report["verdicts"].get(family, []):
            lines.append(f"- {verdict}")
        lines.append("")
    return "\n".join(lines)


def _better_or_tied(ours: list, theirs: list, metric: str) -> bool:
    """Ours within one standard error (the larger of the two) of theirs, or better."""
    error = max(v for v in (ours[1], theirs[1], 0.0) if v is not None and not math.isnan(v))
    if metric in LOWER_IS_BETTER:
        return ours[0] <= theirs[0] + error
    return ours[0] >= theirs[0] - error


def verdicts(family_sets: dict) -> list[str]:
    """Per image set: our best map (by insertion) against the best peer's, on insertion and both
    ROAD curves within one standard error, and on time."""
    out = []
    for set_name, methods in family_sets.items():
        ours = [(m, rows["ours"]) for m, rows in methods.items() if rows["ours"]["metrics"]]
        peers = [(m, label, row) for m, rows in methods.items() for label, row in rows.items()
                 if label != "ours" and row["metrics"]]
        if not ours or not peers:
            continue
        best_method, best = max(ours, key=lambda item: item[1]["metrics"]["insertion"][0])
        peer_method, peer_label, peer = max(peers, key=lambda item: item[2]["metrics"]["insertion"][0])
        checks = []
        for metric in ("insertion", "road_least", "road_most"):
            if metric in best["metrics"] and metric in peer["metrics"]:
                ok = _better_or_tied(best["metrics"][metric], peer["metrics"][metric], metric)
                checks.append(f"{HEADINGS[metric]} {best['metrics'][metric][0]:.3f} vs {peer['metrics'][metric][0]:.3f} "
                              f"{'✓' if ok else '✗'}")
        faster = best["seconds"][0] <= peer["seconds"][0]
        checks.append(f"time {1000 * best['seconds'][0]:.0f} vs {1000 * peer['seconds'][0]:.0f} ms {'✓' if faster else '✗'}")
        out.append(f"{set_name}: our best {best_method} against the best peer, {peer_label} ({peer_method}): "
                   + "; ".join(checks))
    return out


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engines.faithfulness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="quick settings, 3 shapes images and 1 photo: a smoke test")
    parser.add_argument("--shapes", type=int, default=40, help="images of the shapes test set (0: none)")
    parser.add_argument("--views", type=int, default=2, help=f"views of each shipped photo, 0 to {len(data.VIEWS)}")
    parser.add_argument("--photos", default="", help="comma-separated photo names (default: every shipped photo)")
    parser.add_argument("--families", default="", help="comma-separated families (default: all)")
    parser.add_argument("--methods", default="", help="comma-separated methods (default: all of the families)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.PARAM=VALUE", help="a method's setting")
    parser.add_argument("--steps", type=int, default=32, help="points of the deletion and insertion curves")
    parser.add_argument("--no-photo-road", action="store_true", help="leave ROAD out on photos (its slowest part)")
    parser.add_argument("--photo-model", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1, so CPU seconds per map are the map's work)")
    parser.add_argument("--json", default="", help="write the results here")
    parser.add_argument("--markdown", default="", help="write the tables here")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    set_threads(max(1, args.threads))
    log = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    families = [f for f in args.families.split(",") if f]
    methods = [m for m in args.methods.split(",") if m] or [
        m for m in method_names() if not families or method_info(m).family in families]
    try:
        settings = parse_settings(args.set, methods)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    shapes_count, views = (min(args.shapes, 3), min(args.views, 1)) if args.quick else (args.shapes, args.views)
    sets: list[tuple[data.ImageSet, Any, bool, tuple]] = []
    if shapes_count > 0:
        sets.append((data.shapes_set(shapes_count), load_model("shapes_cnn", device="cpu"), True, ROAD_FRACTIONS))
    if views > 0:
        loaded = load_model(args.photo_model, device="cpu")
        photos = [p for p in args.photos.split(",") if p] or None
        if args.quick:
            photos = photos or [next(n for n in data.sample_images() if not n.startswith("shapes"))]
        sets.append((data.photo_views(loaded, views, photos), loaded, not args.no_photo_road, PHOTO_ROAD_FRACTIONS))
    report: dict[str, Any] = {"machine": platform.platform(), "torch": torch.__version__, "sets": {}, "families": {},
                              "verdicts": {}, "settings": {}}
    for images, loaded, road, fractions in sets:
        report["sets"][images.name] = f"{len(images.images)} images, {loaded.name}"
        for method in methods:
            chosen = dict(settings[method])
            if args.quick:
                chosen = method_info(method).settings({**chosen, **method_info(method).quick(tuple(images.images.shape[2:]))})
            report["settings"].setdefault(images.name, {})[method] = chosen
            steps = 4 if args.quick else args.steps
            road_points = (0.0, 0.5) if args.quick else fractions
            family = method_info(method).family
            report["families"].setdefault(family, {}).setdefault(images.name, {})[method] = score_method(
                loaded.model, images, method, chosen, steps=steps, road_fractions=road_points, road=road, log=log)
    for family, family_sets in report["families"].items():
        report["verdicts"][family] = verdicts(family_sets)
    text = markdown(report)
    print(text)
    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as handle:
            handle.write(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=1, ensure_ascii=False, default=str)
    return 0
