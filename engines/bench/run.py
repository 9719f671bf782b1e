"""Benchmark: every registered method against its peer (Captum, pytorch-grad-cam, TorchRay) and its pass floor.

    python -m engines.bench [--quick] [--device cpu|cuda] [--model efficientnet_lite0]
                            [--repeats 5] [--methods a,b] [--set active.rivals=100] [--json bench.json]

For each method, on the same model, image, target and settings: our median seconds; the pass
floor's (`bench_floor`: a bare loop doing exactly the method's passes at its fastest batch size);
its peer's (the first installed one of its record's `peers`) at its default batching and at its
fastest (`bench_peers`), where a peer computes the same map; the ratios; and the peak memory of one call. Contestants are timed in turns after a
warm-up (`bench_timing`), so the ratios hold on a noisy machine. Three more rows check the
dashboard's promises: the four one-gradient maps together through `explain_many`, the
live-occlusion call, and OISE's time and deletion AUC against the authors' 5000-query budget.
`--quick` shrinks every setting so that the whole run takes under a minute on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import torch

from engines.bench import peers as bench_peers
from engines.bench import floor as bench_floor
from engines.bench import report as bench_report
from engines.bench.timing import median, peak_memory, synchroniser, time_in_turns, warm_ours
from engines.core.explain import check_images, explain, explain_many, predict
from engines.data.images import read_image, sample_images
from engines.evaluation.metrics import deletion_curve
from engines.models.catalogue import load_model
from engines.families.nonlinear import flow_path
from engines.families.occlusion import occlude
from engines.core.registry import method_info, method_names
from engines.cli.settings import given_settings, parse_settings

def quick_settings(method: str, size: tuple[int, int]) -> dict:
    """Settings of `--quick`: every method still runs its real code, on a handful of passes
    (its record's `quick` settings)."""
    return method_info(method).quick(size)


SHARED = ("gradient", "gradient_x_input", "positive", "negative")
"""The maps one forward and one backward pass serve together (the `explain_many` row)."""


@dataclass
class Row:
    """One benchmark row: seconds of each contestant's calls (medians come from these)."""

    name: str
    settings: dict[str, Any]
    ours: list[float]
    floor: list[float]
    floor_batches: list[int] = field(default_factory=list)
    peer_label: str = ""
    peer_default: list[float] = field(default_factory=list)
    peer_best: list[float] = field(default_factory=list)
    peer_best_setting: str = ""
    peak_ours: int = 0
    peak_peer: int = 0
    note: str = ""

    def medians(self) -> dict[str, float]:
        return {
            "ours": median(self.ours), "floor": median(self.floor),
            "peer_default": median(self.peer_default), "peer_best": median(self.peer_best),
        }


LONG_CALL_SECONDS = 5.0


def repeats_for(args: argparse.Namespace, call_seconds: float) -> int:
    """`--repeats`, but at most 3 for calls over `LONG_CALL_SECONDS` (their noise is relatively
    smaller, and five turns of them would take many minutes)."""
    return min(args.repeats, 3) if call_seconds > LONG_CALL_SECONDS else args.repeats


def _fastest_peer(reference, model, x, target, settings, sync, quick: bool) -> tuple[Any, float]:
    """The peer's fastest batching value among its candidates: `(value, seconds)`, by the best of
    two timed calls per candidate after an untimed one (quick: one call, untimed warm-up none)."""
    best, best_seconds = reference.default, float("inf")
    candidates = reference.candidates(settings)
    for value in sorted({candidates[0], candidates[-1]}) if quick else candidates:
        call = reference.build(model, x, target, settings, value)
        seconds = time_in_turns({"c": call}, 1 if quick else 2, sync, warm_up=0 if quick else 1)["c"]
        if min(seconds) < best_seconds:
            best, best_seconds = value, min(seconds)
    return best, best_seconds


def _as_run(method: str, settings: dict, loaded, x: torch.Tensor, target: int) -> dict:
    """The settings the floor should copy: gradient flow stops where the predicted class changes,
    so its floor takes the steps this image's path really takes."""
    if method != "gradient_flow":
        return settings
    path = flow_path(loaded.model, x.to(loaded.device), torch.tensor([target]), settings["steps"], settings["step_size"])
    return dict(settings, steps=int(path.steps_taken.max()))


def bench_method(loaded, x, target: int, method: str, settings: dict, args) -> Row:
    """Ours, the floor and (where a peer computes the same map) the peer at its default and fastest."""
    model, sync = loaded.model, synchroniser(loaded.device)
    full = method_info(method).settings(settings)
    ours = lambda: explain(loaded, x, method, target=target, **settings)  # noqa: E731
    call_seconds = warm_ours(ours, model, most=1 if args.quick else 6)
    stages = bench_floor.plan(method, _as_run(method, full, loaded, x, target), len(loaded.categories),
                              tuple(x.shape[2:]))
    batches = bench_floor.fastest_batches(model, x, stages, target, sync=sync, budget=args.budget, ends_only=args.quick)
    contestants = {"ours": ours, "floor": lambda: bench_floor.run_plan(model, x, stages, batches, target)}
    row = Row(method, full, [], [], floor_batches=batches)
    reference = bench_peers.reference(method, full, tuple(x.shape[2:])) if args.peers else None
    if reference is not None:
        row.peer_label = reference.label
        contestants["peer_default"] = reference.build(model, x, target, full, reference.default)
        if reference.knob is not None:
            value, _ = _fastest_peer(reference, model, x, target, full, sync, args.quick)
            row.peer_best_setting = f"{reference.knob}={value}"
            contestants["peer_best"] = reference.build(model, x, target, full, value)
    if "peer_default" in contestants:
        contestants["peer_default"]()  # every other contestant is warm already
    times = time_in_turns(contestants, repeats_for(args, call_seconds), sync, warm_up=0)
    row.ours, row.floor = times["ours"], times["floor"]
    row.peer_default = times.get("peer_default", [])
    row.peer_best = times.get("peer_best", row.peer_default if "peer_default" in times else [])
    if not row.peer_best_setting and row.peer_label:
        row.peer_best_setting = "no batching knob"
    if args.memory:
        row.peak_ours = peak_memory(ours, loaded.device)
        if "peer_default" in contestants:
            row.peak_peer = peak_memory(contestants["peer_default"], loaded.device)
    return row


def _against_one_pass(loaded, x, target: int, args, name: str, settings: dict, ours, kind: str) -> Row:
    """`ours` timed in turns against one bare pass of `kind` ("forward" or "gradient") at batch 1."""
    stage = [bench_floor.Stage(kind, 1)]
    floor = lambda: bench_floor.run_plan(loaded.model, x, stage, [1], target)  # noqa: E731
    times = time_in_turns({"ours": ours, "floor": floor}, args.repeats, synchroniser(loaded.device), warm_up=args.warm_up)
    return Row(name, settings, times["ours"], times["floor"], [1])


def bench_shared(loaded, x, target: int, args) -> Row:
    """`explain_many` of the one-gradient maps against a single forward + backward pass."""
    ours = lambda: explain_many(loaded, x, list(SHARED), target=target)  # noqa: E731
    return _against_one_pass(loaded, x, target, args, "explain_many(" + ", ".join(SHARED) + ")", {}, ours, "gradient")


def bench_live_occlusion(loaded, x, target: int, args) -> Row:
    """The Occlusion page's call (`occlude`: rank, fill, one forward pass) against one forward pass."""
    saliency = explain(loaded, x, "gradient", target=target).map
    ours = lambda: occlude(loaded, x, saliency, 0.3, "black", target=target)  # noqa: E731
    return _against_one_pass(loaded, x, target, args, "occlude (live occlusion, 30 % black)",
                             {"fraction": 0.3, "fill": "black"}, ours, "forward")


def oise_quality(loaded, images: dict[str, torch.Tensor], queries: int, reference_queries: int) -> dict:
    """OISE's deletion AUC (and seconds) at `queries` and at the authors' `reference_queries`,
    per image and on average: does the smaller budget find as faithful a map?"""
    result: dict[str, Any] = {"queries": queries, "reference_queries": reference_queries, "images": {}}
    for name, x in images.items():
        entry = {}
        for budget in (queries, reference_queries):
            began = time.perf_counter()
            saliency = explain(loaded, x, "oise", queries=budget).map
            seconds = time.perf_counter() - began
            auc = float(deletion_curve(loaded, x, saliency).auc[0])
            entry[str(budget)] = {"deletion_auc": auc, "seconds": seconds}
        result["images"][name] = entry
    for budget in (queries, reference_queries):
        aucs = [e[str(budget)]["deletion_auc"] for e in result["images"].values()]
        result[f"mean_auc_{budget}"] = sum(aucs) / len(aucs)
    return result


def _images(loaded, names: list[str]) -> dict[str, torch.Tensor]:
    samples = sample_images()
    # each (1, C, H, W), as `explain` checks and lays it out, so every contestant gets the same tensor
    return {name: check_images(loaded.preprocess(read_image(samples[name]))) for name in names}


def default_image(model_name: str) -> str:
    return "shapes_star" if model_name == "shapes_cnn" else "chelsea"


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engines.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small settings: under a minute on 2 CPU cores")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--image", default=None, help="a bundled sample's name (default chelsea)")
    parser.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per contestant (default 5; quick 2)")
    parser.add_argument("--set", action="append", default=[], metavar="METHOD.PARAM=VALUE",
                        help="change a method's setting from its default (repeatable)")
    parser.add_argument("--no-peers", dest="peers", action="store_false",
                        help="leave the peers (Captum, pytorch-grad-cam, TorchRay) out")
    parser.add_argument("--oise-reference", type=int, default=None,
                        help="OISE queries to compare the default budget with (default 5000; quick: skipped)")
    parser.add_argument("--oise-images", type=int, default=1,
                        help="photos (chelsea, coffee, astronaut) the OISE budgets are compared on (default 1)")
    parser.add_argument("--json", default="bench.json", help="where to write the results (default bench.json)")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.budget = 0.1 if args.quick else 1.0
    args.memory = not args.quick  # the memory target is for default settings
    args.warm_up = 0 if args.quick else 1  # quick: the searches before the turns have warmed every call
    if args.oise_reference is None:
        args.oise_reference = 0 if args.quick else 5000
    known = method_names()
    args.methods = known if args.methods is None else [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in args.methods if m not in known]
    if unknown:
        parser.error(f"unknown methods {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        checked = parse_settings(args.set, args.methods)
    except ValueError as error:
        parser.error(str(error))
    # Only what was asked for, so --quick's small settings do not override it; values as checked.
    args.given = {m: {name: checked[m][name] for name in names}
                  for m, names in given_settings(args.set, args.methods).items()}
    if args.peers and not bench_peers.any_available():
        print("No peer library is installed (pip install -r requirements-test.txt): their columns stay empty.",
              file=sys.stderr)
        args.peers = False
    return args


def run(args: argparse.Namespace) -> dict:
    """Every row of the benchmark, as the JSON document it writes."""
    loaded = load_model(args.model, device=args.device)
    image = args.image or default_image(args.model)
    x = _images(loaded, [image])[image]
    target = int(predict(loaded, x).logits.argmax(1)[0])
    rows = []
    for method in args.methods:
        print(f"timing {method} ({time.perf_counter() - args.began:.0f} s so far) …", file=sys.stderr, flush=True)
        settings = quick_settings(method, tuple(x.shape[2:])) if args.quick else {}
        settings = {**settings, **args.given.get(method, {})}
        rows.append(bench_method(loaded, x, target, method, settings, args))
    print("timing explain_many and the live occlusion …", file=sys.stderr, flush=True)
    extras = [bench_shared(loaded, x, target, args), bench_live_occlusion(loaded, x, target, args)]
    quality = None
    if args.oise_reference and "oise" in args.methods:
        print(f"OISE at {args.oise_reference} queries …", file=sys.stderr, flush=True)
        queries = method_info("oise").defaults()["queries"]
        photos = [n for n in ("chelsea", "coffee", "astronaut") if n in sample_images()][: args.oise_images]
        quality = oise_quality(loaded, _images(loaded, photos), queries, args.oise_reference)
    return {
        "model": args.model, "image": image, "target": target, "device": str(loaded.device),
        "device_name": torch.cuda.get_device_name(loaded.device) if loaded.device.type == "cuda" else platform.processor()
        or platform.machine(),
        "threads": torch.get_num_threads(), "torch": torch.__version__, "quick": args.quick, "repeats": args.repeats,
        "rows": [asdict(r) | {"medians": r.medians()} for r in rows],
        "extras": [asdict(r) | {"medians": r.medians()} for r in extras],
        "oise_quality": quality,
    }


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    args.began = time.perf_counter()
    result = run(args)
    result["seconds"] = time.perf_counter() - args.began
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=1)
    print(bench_report.markdown(result))
    print(f"\n({result['seconds']:.0f} s in all; JSON in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
