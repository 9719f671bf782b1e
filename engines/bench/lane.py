"""Benchmark of the compute lane and the previews: first pictures, final maps, a shared server.

    python -m engines.bench.lane [--device cpu|cuda] [--sessions 1,2,4] [--methods a,b] [--json lane.json]

Three tables, all in one process, on EfficientNet-Lite0:

* **per method, at its registry defaults**: seconds to the first preview and to the final map
  with `preview=`, against the same call without previews (timed in turns);
* **the first screen** (`engines.FIRST_SCREEN`) through one `explain_many` with previews: when
  each map shows its first picture and when it is final;
* **a shared server**: K simulated sessions (threads, each its own lane session, each on its own
  sample image) compute the first screen at once while one more session moves the occlusion
  slider (`occlude` calls back to back, a new fraction each). Throughput is the serial time of
  the same work (each image's panel computed alone, one after another, plus as many slider
  calls as were answered, at their idle median) over the wall time of the K at once (the panels'
  share alone, without the slider's work, is shown beside it);
  the slider's latency p50/p95 is compared with its p50 on an otherwise idle machine; every
  session's maps are compared with the serial run's, each relative to its own largest value
  (`SAME_TOLERANCE`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from typing import Any, Optional

import torch

from engines.bench.timing import synchroniser
from engines.core.explain import check_images, explain, explain_many, predict
from engines.core.panel import FIRST_SCREEN
from engines.core.registry import method_names
from engines.data.images import read_image, sample_images
from engines.families.occlusion import occlude
from engines.models.catalogue import load_model

IMAGES = ("chelsea", "coffee", "astronaut", "rocket", "camera")
SAME_TOLERANCE = 1e-3
"""Largest |Δ| between a map computed beside other sessions and the same map computed alone,
over that map's largest value, that still counts as the same map. Sessions at once cut chunks
differently, and oneDNN's CPU kernels round differently for different batch sizes: integrated
gradients on chelsea computed in chunks of 1 and of 2, 3 or 16 path points differ by 7e-4 of the
map's largest value at one pixel (a ReLU gate flipping), serially, with nothing else running."""


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


class Watch:
    """A preview callback that records when each method's first preview and final map came."""

    def __init__(self, sync):
        self.began = time.perf_counter()
        self.sync = sync
        self.first: dict[str, float] = {}
        self.final: dict[str, float] = {}
        self.previews: dict[str, int] = {}

    def __call__(self, explanation) -> None:
        now = time.perf_counter() - self.began
        self.first.setdefault(explanation.method, now)
        if explanation.progress >= 1:
            self.final[explanation.method] = now
        else:
            self.previews[explanation.method] = self.previews.get(explanation.method, 0) + 1


def per_method(loaded, x, target: int, methods: list[str], sync, turns: int = 1) -> list[dict]:
    """Each method at its defaults: first preview and final with previews, and without, in turns."""
    rows = []
    for method in methods:
        print(f"  {method} …", file=sys.stderr, flush=True)
        explain(loaded, x, method, target=target)  # warm: the chunk tuner settles
        with_times, without, firsts, counts = [], [], [], []
        for turn in range(turns):
            for previewing in ((True, False) if turn % 2 == 0 else (False, True)):
                watch = Watch(sync)
                began = time.perf_counter()
                explain(loaded, x, method, target=target, preview=watch if previewing else None)
                sync()
                seconds = time.perf_counter() - began
                if previewing:
                    with_times.append(seconds)
                    firsts.append(watch.first.get(method, seconds))
                    counts.append(watch.previews.get(method, 0))
                else:
                    without.append(seconds)
        rows.append({"method": method, "first": statistics.median(firsts), "final": statistics.median(with_times),
                     "without": statistics.median(without), "previews": max(counts)})
    return rows


def first_screen(loaded, x, target: int, sync) -> dict:
    """The first screen through one `explain_many` with previews."""
    params = {m: dict(s) for m, s in FIRST_SCREEN.items()}
    explain_many(loaded, x, list(params), target, params, preview=lambda e: None)  # warm
    watch = Watch(sync)
    began = time.perf_counter()
    explain_many(loaded, x, list(params), target, params, preview=watch)
    total = time.perf_counter() - began
    return {"methods": list(params), "first": watch.first, "final": watch.final, "total": total}


def _panel(loaded, x) -> dict[str, torch.Tensor]:
    params = {m: dict(s) for m, s in FIRST_SCREEN.items()}
    results = explain_many(loaded, x, list(params), None, params, preview=lambda e: None)
    return {m: r.map for m, r in results.items()}


class Slider(threading.Thread):
    """One more session moving the occlusion slider: `occlude` back to back, a new fraction each."""

    def __init__(self, loaded, x, saliency, pause: float = 0.02):
        super().__init__(daemon=True)
        self.loaded, self.x, self.saliency, self.pause = loaded, x, saliency, pause
        self.latencies: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        step = 0
        while not self.halt.is_set():
            fraction = 0.05 + 0.9 * ((step * 0.137) % 1.0)
            began = time.perf_counter()
            occlude(self.loaded, self.x, self.saliency, fraction, "black")
            self.latencies.append(time.perf_counter() - began)
            step += 1
            self.halt.wait(self.pause)


def shared_server(loaded, images: dict[str, torch.Tensor], counts: list[int], slider_seconds: float) -> dict:
    """K sessions computing the first screen at once, beside a moving slider, against serial."""
    names = list(images)
    slider_x = images[names[0]]
    saliency = explain(loaded, slider_x, "gradient").map
    for name in names[: max(counts)]:
        _panel(loaded, images[name])  # warm every image's shapes
    idle = Slider(loaded, slider_x, saliency)
    idle.start()
    time.sleep(slider_seconds)
    idle.halt.set()
    idle.join()
    idle_p50 = statistics.median(idle.latencies)
    serial: dict[str, float] = {}
    reference: dict[str, dict[str, torch.Tensor]] = {}
    for name in names[: max(counts)]:
        print(f"  serial {name} …", file=sys.stderr, flush=True)
        began = time.perf_counter()
        reference[name] = _panel(loaded, images[name])
        serial[name] = time.perf_counter() - began
    rows = []
    for k in counts:
        print(f"  {k} sessions at once, and the slider …", file=sys.stderr, flush=True)
        chosen = names[:k]
        maps: dict[str, dict[str, torch.Tensor]] = {}
        finished: dict[str, float] = {}

        def session(name: str) -> None:
            maps[name] = _panel(loaded, images[name])
            finished[name] = time.perf_counter() - began

        slider = Slider(loaded, slider_x, saliency)
        threads = [threading.Thread(target=session, args=(name,)) for name in chosen]
        began = time.perf_counter()
        slider.start()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        slider.halt.set()
        slider.join()
        relative = {f"{n}/{m}": float((maps[n][m] - reference[n][m]).abs().max())
                    / max(float(reference[n][m].abs().max()), 1e-12) for n in chosen for m in maps[n]}
        worst = max(relative, key=relative.get)
        panels = sum(serial[n] for n in chosen)
        slider_work = len(slider.latencies) * idle_p50  # the slider's calls, as long as each takes alone
        serial_total = panels + slider_work
        rows.append({
            "sessions": k, "serial": serial_total, "serial_panels": panels, "slider_work": slider_work,
            "wall": wall, "throughput": serial_total / wall, "panels_throughput": panels / wall,
            "slider_p50": statistics.median(slider.latencies), "slider_p95": _percentile(slider.latencies, 0.95),
            "slider_calls": len(slider.latencies), "idle_p50": idle_p50,
            "relative_difference": relative[worst], "worst_map": worst, "differences": relative,
            "finished": finished,
        })
    return {"idle_p50": idle_p50, "idle_calls": len(idle.latencies), "serial": serial, "rows": rows}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def markdown(result: dict) -> str:
    lines = []
    if result.get("methods"):
        lines += ["| method (registry defaults) | first preview | final, with previews | without previews | "
                  "with ÷ without | previews |", "|---|---|---|---|---|---|"]
        for r in result["methods"]:
            lines.append(f"| {r['method']} | {_ms(r['first'])} | {_ms(r['final'])} | {_ms(r['without'])} | "
                         f"{r['final'] / r['without']:.2f}× | {r['previews']} |")
        lines.append("")
    screen = result.get("first_screen")
    if screen:
        lines += ["| first screen map | settings | first picture | final | targets |", "|---|---|---|---|---|"]
        for m in screen["methods"]:
            first, final = screen["first"].get(m, float("nan")), screen["final"].get(m, float("nan"))
            setting = ", ".join(f"{k}={v}" for k, v in FIRST_SCREEN[m].items()) or "defaults"
            marks = f"{'✓' if first <= 1.5 else '✗'} first ≤ 1.5 s"
            lines.append(f"| {m} | {setting} | {_ms(first)} | {_ms(final)} | {marks} |")
        lines.append(f"| **whole panel** | | | {_ms(screen['total'])} | "
                     f"{'✓' if screen['total'] <= 10 else '✗'} final ≤ 10 s |")
        lines.append("")
    shared = result.get("shared")
    if shared:
        lines += ["| sessions at once | serial: panels + slider | at once | throughput ÷ serial | panels alone ÷ serial | "
                  "slider p50 | slider p95 | p95 − idle p50 | largest \\|Δ\\| vs serial (÷ the map's largest value) | targets |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in shared["rows"]:
            gap = r["slider_p95"] - shared["idle_p50"]
            marks = [f"{'✓' if r['throughput'] >= 0.9 else '✗'} ≥ 0.9×",
                     f"{'✓' if gap <= 0.3 else '✗'} p95 ≤ idle p50 + 0.3 s",
                     f"{'✓' if r['relative_difference'] <= SAME_TOLERANCE else '✗'} same maps"]
            lines.append(f"| {r['sessions']} | {_ms(r['serial_panels'])} + {_ms(r['slider_work'])} | {_ms(r['wall'])} | "
                         f"{r['throughput']:.2f}× | {r['panels_throughput']:.2f}× | "
                         f"{_ms(r['slider_p50'])} | {_ms(r['slider_p95'])} | {gap * 1000:+.0f} ms | "
                         f"{r['relative_difference']:.1e} ({r['worst_map']}) | {', '.join(marks)} |")
        lines.append(f"\nSlider alone on the idle machine: p50 {_ms(shared['idle_p50'])} "
                     f"over {shared['idle_calls']} calls.")
    return "\n".join(lines)


def parse_args(argv: Optional[list[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engines.bench.lane", description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--methods", default=None, help="methods of the per-method table (default: every one; "
                        "'none' skips the table)")
    parser.add_argument("--sessions", default="1,2,4", help="session counts of the shared-server table ('' skips it)")
    parser.add_argument("--slider-seconds", type=float, default=4.0, help="how long the idle slider is timed")
    parser.add_argument("--turns", type=int, default=1, help="timed calls with and without previews, per method")
    parser.add_argument("--json", default="lane.json")
    args = parser.parse_args(argv)
    known = method_names()
    if args.methods == "none":
        args.methods = []
    elif args.methods is None:
        args.methods = known
    else:
        args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in args.methods if m not in known]
        if unknown:
            parser.error(f"unknown methods {', '.join(unknown)}; known: {', '.join(known)}")
    try:
        args.sessions = [int(k) for k in args.sessions.split(",") if k.strip()]
    except ValueError:
        parser.error(f"--sessions must be whole numbers separated by commas; got {args.sessions!r}")
    if any(k < 1 or k > len(IMAGES) for k in args.sessions):
        parser.error(f"--sessions must lie in [1, {len(IMAGES)}]")
    return args


def run(args: argparse.Namespace) -> dict[str, Any]:
    loaded = load_model(args.model, device=args.device)
    sync = synchroniser(loaded.device)
    samples = sample_images()
    names = [n for n in IMAGES if n in samples]
    images = {n: check_images(loaded.preprocess(read_image(samples[n]))) for n in names}
    x = images[names[0]]
    target = int(predict(loaded, x).logits.argmax(1)[0])
    result: dict[str, Any] = {"model": args.model, "device": str(loaded.device), "threads": torch.get_num_threads(),
                              "torch": torch.__version__}
    print("first screen …", file=sys.stderr, flush=True)
    result["first_screen"] = first_screen(loaded, x, target, sync)
    _save(args, result)
    if args.sessions:
        print("shared server …", file=sys.stderr, flush=True)
        result["shared"] = shared_server(loaded, images, args.sessions, args.slider_seconds)
        _save(args, result)
    if args.methods:
        print("per method, at defaults …", file=sys.stderr, flush=True)
        result["methods"] = []
        for method in args.methods:  # saved after each, so a long run keeps what it measured
            result["methods"] += per_method(loaded, x, target, [method], sync, args.turns)
            _save(args, result)
    return result


def _save(args: argparse.Namespace, result: dict) -> None:
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=1)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    result = run(args)
    result["seconds"] = time.perf_counter() - began
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=1)
    print(f"{args.model} on {result['device']} ({result['threads']} threads, torch {result['torch']})\n")
    print(markdown(result))
    print(f"\n({result['seconds']:.0f} s in all; JSON in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
