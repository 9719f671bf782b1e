"""The measurement behind the defaults: each choice's candidates scored on the same images.

    python -m engines.faithfulness.defaults [--shapes 40] [--views 3] [--quick] [--json defaults.json]

Choices: the occlusion fill (grey or black), the SmoothGrad variant (mean, mean_abs, squared),
the extremal-perturbation iterations, and the OISE query budget, with RISE at the same numbers of
queries beside it (the OISE paper's claim is that it wins). Each candidate's maps are scored by
`engines.faithfulness.scoring.score_maps` on the shapes test set (shapes CNN: deletion,
insertion, ROAD both ways, pointing game strict and tolerant, relevance mass) and on views of
every shipped photo (`data.photo_views`: crops, rescalings, flips; EfficientNet-Lite0:
deletion and insertion). Reported per candidate: mean ± standard error, and the paired
difference of insertion AUC from the first candidate ± its standard error (the same images,
so the paired error is the one that says whether a difference is real).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from typing import Optional


from engines.core.explain import explain, predict
from engines.faithfulness import data
from engines.faithfulness.scoring import HEADINGS, mean_and_error, score_maps
from engines.models.catalogue import load_model


@dataclass(frozen=True)
class Choice:
    """A default to choose: `method`'s candidates `{label: settings}` (the first is today's), and
    the image sets they are measured on ("shapes", "photos")."""

    name: str
    method: str
    candidates: dict
    sets: tuple = ("shapes", "photos")


CHOICES = (
    Choice("occlusion fill", "occlusion", {"grey": {"fill": "grey"}, "black": {"fill": "black"}}),
    Choice("SmoothGrad variant", "smoothgrad",
           {"mean": {"variant": "mean"}, "mean_abs": {"variant": "mean_abs"}, "squared": {"variant": "squared"}}),
    Choice("extremal iterations", "extremal",
           {"150": {"iterations": 150}, "75": {"iterations": 75}, "300": {"iterations": 300}}, ("shapes",)),
    Choice("OISE budget, RISE at equal queries", "oise",
           {f"oise {q}": {"queries": q} for q in (128, 256, 512, 1024)}
           | {f"rise {q}": {"method": "rise", "masks": q} for q in (128, 256, 512, 1024)}, ("shapes",)),
)


def measure(choice: Choice, images: data.ImageSet, loaded, *, road: bool, steps: int) -> dict:
    """`{candidate: {"metrics": {metric: [mean, se]}, "insertion_gain": [mean, se], "seconds": s}}`."""
    x = images.images
    targets = predict(loaded.model, x).logits.argmax(dim=1)
    out, first = {}, None
    for label, settings in choice.candidates.items():
        settings = dict(settings)
        method = settings.pop("method", choice.method)
        began = time.perf_counter()
        maps = explain(loaded.model, x, method, targets, **settings).map
        seconds = (time.perf_counter() - began) / len(x)
        scores = score_maps(loaded.model, x, maps, targets, images.masks, steps=steps, road=road)
        entry = {"metrics": {k: list(mean_and_error(v)) for k, v in scores.items()}, "seconds": seconds}
        if first is None:
            first = scores["insertion"]
        entry["insertion_gain"] = list(mean_and_error(scores["insertion"] - first))
        out[label] = entry
        print(f"  {choice.name} / {label} on {images.name}: insertion {entry['metrics']['insertion'][0]:.3f} "
              f"(gain {entry['insertion_gain'][0]:+.3f} ± {entry['insertion_gain'][1]:.3f}), "
              f"{seconds * 1000:.0f} ms/map", file=sys.stderr, flush=True)
    return out


def markdown(results: dict, sets: dict) -> str:
    lines = []
    for name, by_set in results.items():
        lines.append(f"**{name}**\n")
        for set_name, rows in by_set.items():
            metrics = list(next(iter(rows.values()))["metrics"])
            lines.append(f"{set_name} ({sets[set_name]}):\n")
            lines.append("| candidate | " + " | ".join(HEADINGS[m] for m in metrics) + " | insertion − first | ms / map |")
            lines.append("|---" * (len(metrics) + 3) + "|")
            for label, row in rows.items():
                cells = [f"{row['metrics'][m][0]:.3f} ± {row['metrics'][m][1]:.3f}" for m in metrics]
                gain = row["insertion_gain"]
                gain_cell = "–" if label == next(iter(rows)) else f"{gain[0]:+.3f} ± {gain[1]:.3f}"
                lines.append(f"| {label} | " + " | ".join(cells) + f" | {gain_cell} | {row['seconds'] * 1000:.0f} |")
            lines.append("")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.faithfulness.defaults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", type=int, default=40, help="images of the shapes test set")
    parser.add_argument("--views", type=int, default=3, help=f"views of each shipped photo, 0 to {len(data.VIEWS)}")
    parser.add_argument("--choices", default="", help="comma-separated methods whose choices to measure (default: all)")
    parser.add_argument("--quick", action="store_true", help="2 shapes images, 1 photo view, 8 curve points")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    wanted = [c for c in args.choices.split(",") if c]
    choices = [c for c in CHOICES if not wanted or c.method in wanted]
    shapes_count, views = (2, 1) if args.quick else (args.shapes, args.views)
    steps = 8 if args.quick else 32
    sets = {}
    if shapes_count:
        sets["shapes"] = (data.shapes_set(shapes_count), load_model("shapes_cnn", device="cpu"), True)
    if views:
        photos_model = load_model("efficientnet_lite0", device="cpu")
        sets["photos"] = (data.photo_views(photos_model, views), photos_model, False)
    results: dict = {}
    for choice in choices:
        if args.quick:
            choice = Choice(choice.name, choice.method, dict(list(choice.candidates.items())[:2]), choice.sets)
        for set_name, (images, loaded, road) in sets.items():
            if set_name in choice.sets:
                results.setdefault(choice.name, {})[set_name] = measure(choice, images, loaded, road=road, steps=steps)
    described = {name: f"{len(images.images)} images, {loaded.name}" for name, (images, loaded, _) in sets.items()}
    print(markdown(results, described))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump({"sets": described, "results": results}, handle, indent=1, ensure_ascii=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
