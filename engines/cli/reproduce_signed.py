"""Reproduce the signed-map paper's allegiance table on the shapes CNN.

Llorente, Boal & Sánchez-Úbeda (arXiv:2309.12913) report that deleting the pixels ranked by the
positive or active map to black breaks the prediction sooner (lower allegiance AUC) than the
vanilla gradient map, and likewise negative/inactive with white. This command runs their
protocol (docs/methods.md §2: map once on the clean image, whole pixels set to black or white,
strictly above the threshold, zero-saliency pixels never deleted, the paper's uneven fraction
grid, trapezoid AUC) on our from-scratch shapes CNN over its test images, with exact
active/inactive maps (all 10 classes), and prints a Markdown table.

    python -m engines.cli.reproduce_signed [--images 1000] [--json out.json]

The crossed pairings (white for positive/active, black for negative/inactive) test the paper's
second claim: the sign says which way occlusion moves the prediction, so those AUCs stay high.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from engines import explain_many
from engines.models import shapes
from engines.evaluation.metrics import PAPER_FRACTIONS, allegiance_curve
from engines.models.catalogue import load_model

METHODS = ("gradient", "positive", "negative", "active", "inactive")
PAIRINGS = {  # method -> fills, the paper's pairing first (the original map is paired with both)
    "gradient": ("black", "white"),
    "positive": ("black", "white"),
    "active": ("black", "white"),
    "negative": ("white", "black"),
    "inactive": ("white", "black"),
}
PAPER = {("gradient", "black"): 0.23, ("positive", "black"): 0.14, ("active", "black"): 0.15,
         ("gradient", "white"): 0.21, ("negative", "white"): 0.14, ("inactive", "white"): 0.15}
"""The paper's draft table: CIFAR-10 basic CNN (not our model), for reference only."""


def allegiance_table(images: int, batch: int = 200, seed: int = shapes.TEST_SEED) -> dict:
    """Mean allegiance AUC (and its standard error) per (method, fill) over `images` test images.

    Images where the model is wrong are kept: allegiance follows the predicted class.
    """
    model = load_model("shapes_cnn", device="auto")
    x_all, labels, _ = shapes.make_dataset(images, seed)
    aucs: dict[tuple[str, str], list[torch.Tensor]] = {}
    deleted: dict[tuple[str, str], list[torch.Tensor]] = {}
    correct = 0
    for start in range(0, images, batch):
        x = x_all[start : start + batch]
        results = explain_many(model, x, list(METHODS))  # exact active/inactive: all classes
        correct += int((results["gradient"].target == labels[start : start + batch]).sum())
        for method, fills in PAIRINGS.items():
            for fill in fills:
                curve = allegiance_curve(model, x, results[method].map, fill=fill, fractions=PAPER_FRACTIONS)
                aucs.setdefault((method, fill), []).append(curve.auc)
                deleted.setdefault((method, fill), []).append(curve.deleted[:, -1])
    table = {}
    for (method, fill), parts in aucs.items():
        values = torch.cat(parts).double()
        table[f"{method}/{fill}"] = {
            "method": method, "fill": fill, "paired": method == "gradient" or PAIRINGS[method][0] == fill,
            "auc": values.mean().item(), "stderr": (values.std() / len(values) ** 0.5).item(),
            "paper": PAPER.get((method, fill)),
            # Zero-saliency pixels are never deleted, so a sparse map deletes less than 90 %.
            "deleted_at_90": torch.cat(deleted[(method, fill)]).double().mean().item(),
        }
    return {"images": images, "accuracy": correct / images, "max_auc": PAPER_FRACTIONS[-1], "rows": table}


def markdown(result: dict) -> str:
    """The table as Markdown: paired fills first, then the crossed ones."""
    lines = [
        "| map | fill | allegiance AUC (lower = better) | pixels deleted at p = 0.9 | paper (CIFAR-10 CNN) |",
        "|---|---|---|---|---|",
    ]
    rows = sorted(result["rows"].values(), key=lambda r: (not r["paired"], r["fill"], METHODS.index(r["method"])))
    for r in rows:
        paper = "" if r["paper"] is None else f"{r['paper']:.2f}"
        tag = "" if r["paired"] else " (crossed)"
        lines.append(
            f"| {r['method']} | {r['fill']}{tag} | {r['auc']:.3f} ± {r['stderr']:.3f} | {r['deleted_at_90']:.0%} | {paper} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000, help="shapes test images (default 1000)")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    result = allegiance_table(args.images)
    result["seconds"] = round(time.perf_counter() - began, 1)
    print(f"{args.images} shapes test images, model accuracy {result['accuracy']:.1%}, {result['seconds']} s")
    print(markdown(result))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == "__main__":
    main()
