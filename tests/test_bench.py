"""The benchmark measures what it says: floors do exactly the method's passes, Captum's
references compute the same maps as ours, turns rotate, memory peaks are seen, and the report
marks a missed target as missed. Speed itself is never asserted here (see README, Benchmark)."""

from __future__ import annotations

import json
import time

import pytest
import torch
from torch import nn

import engines
from engines.bench import run as bench
from engines.bench import peers as bench_peers
from engines.bench import floor as bench_floor
from engines.bench import report as bench_report
from engines.bench import timing as bench_timing
from engines.models.catalogue import freeze
from helpers import Counting

# --------------------------------------------------------------------------- floors


@pytest.mark.parametrize("name", engines.methods())
@pytest.mark.parametrize("classes, size", [(10, (64, 64)), (1000, (224, 224)), (7, (40, 56))])
def test_every_method_has_a_floor_with_the_registrys_pass_count(name, classes, size):
    info = engines.method_info(name)
    for settings in (info.settings(), info.settings(bench.quick_settings(name, size))):
        stages = bench_floor.plan(name, settings, classes, size)
        assert stages and all(s.items >= 1 and s.repeats >= 1 for s in stages)
        assert bench_floor.plan_cost(stages) == info.cost(settings, classes, size)
        assert info.cost(settings, classes, size).forward >= 1  # the clean pass is always counted


@pytest.mark.parametrize(
    "stage, batch, forwards, backwards",
    [
        (bench_floor.Stage("forward", 5), 2, [2, 2, 1], []),
        (bench_floor.Stage("gradient", 5), 4, [4, 1], [4, 1]),
        (bench_floor.Stage("gradient", 1, repeats=3), 1, [1, 1, 1], [1, 1, 1]),
        (bench_floor.Stage("vjp", 3), 1, [1], [1, 1, 1]),
        (bench_floor.Stage("forward", 4, repeats=2), 4, [4, 4], []),
    ],
)
def test_a_stage_runs_exactly_its_passes(stage, batch, forwards, backwards):
    model = freeze(Counting())
    bench_floor.run_stage(model, torch.rand(1, 3, 8, 8), stage, batch, target=2)
    assert model.forward_items == forwards
    assert model.backward_items == backwards


def test_batched_vector_jacobian_products_count_as_their_rows():
    model = freeze(Counting())
    bench_floor.run_stage(model, torch.rand(1, 3, 8, 8), bench_floor.Stage("vjp", 5), 4, target=0)
    assert model.forward_items == [1]  # one forward pass serves every product


def test_the_fastest_batch_is_one_of_the_candidates():
    model = freeze(Counting())
    stages = [bench_floor.Stage("gradient", 6), bench_floor.Stage("forward", 1)]
    chosen = bench_floor.fastest_batches(model, torch.rand(1, 3, 8, 8), stages, 1, sync=lambda: None, budget=0.01)
    assert chosen[0] in (1, 2, 4) and chosen[1] == 1
    assert bench_floor.batch_candidates(bench_floor.Stage("forward", 100)) == [1, 2, 4, 8, 16, 32, 64]


# --------------------------------------------------------------------------- Captum computes what we compute


@pytest.mark.parametrize(
    "method, settings",
    [
        ("gradient", {"reduce": "sum"}),
        ("gradient_x_input", {}),
        ("integrated_gradients", {"steps": 6, "rule": "riemann_middle"}),
        ("integrated_gradients", {"steps": 5, "baseline": "grey"}),
        ("smoothgrad", {"samples": 3, "noise": 0.0}),
        ("occlusion", {"window": 4, "stride": 2}),
        ("occlusion", {"window": 4, "stride": 4, "fill": "mean"}),
    ],
)
@pytest.mark.parametrize("knob", ["default", "smallest"])
def test_captums_reference_computes_our_map(method, settings, knob, smooth_model, small_images):
    x = small_images[:1]
    ours = engines.explain(smooth_model, x, method, target=2, **settings)
    full = engines.method_info(method).settings(settings)
    reference = bench_peers.reference(method, full, (8, 8))
    assert reference is not None and reference.library == "captum"
    value = reference.default if knob == "default" else (reference.candidates(full) or [None])[0]
    theirs = reference.to_map(reference.build(smooth_model, x, 2, full, value)().detach(), full)
    torch.testing.assert_close(ours.map, theirs, rtol=1e-4, atol=1e-6)


def test_captum_is_not_compared_where_it_computes_something_else():
    def comparable(method, size=(224, 224), **settings):
        return bench_peers.reference(method, engines.method_info(method).settings(settings), size) is not None

    assert comparable("occlusion") and comparable("gradient_x_input")
    assert not comparable("gradient_x_input", baseline="grey")
    assert not comparable("occlusion", fill="noise")
    assert not comparable("occlusion", size=(8, 8), window=3, stride=3)  # Captum's windows stop short of the edge
    assert not comparable("occlusion", size=(8, 8), window=2, stride=3)  # Captum refuses strides over the window
    assert not comparable("oise")


# --------------------------------------------------------------------------- timing and memory


def test_turns_rotate_and_every_contestant_is_timed_alike():
    order = []
    contestants = {name: (lambda name=name: order.append(name)) for name in "abc"}
    seconds = bench_timing.time_in_turns(contestants, repeats=3, sync=lambda: None, warm_up=1)
    assert order[:3] == ["a", "b", "c"]  # the warm-up
    assert order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert all(len(v) == 3 for v in seconds.values())


def test_a_slower_call_gets_a_larger_median():
    seconds = bench_timing.time_in_turns(
        {"fast": lambda: None, "slow": lambda: time.sleep(0.02)}, repeats=3, sync=lambda: None
    )
    assert bench_timing.median(seconds["slow"]) > bench_timing.median(seconds["fast"]) + 0.015


def test_peak_memory_sees_a_large_temporary_and_not_a_small_one():
    def large():
        block = torch.ones(200 * 1024**2 // 4)  # 200 MiB, written, so resident
        time.sleep(0.1)
        return float(block[0])

    assert bench_timing.peak_memory(large, torch.device("cpu")) > 150 * 1024**2
    assert bench_timing.peak_memory(lambda: torch.ones(10), torch.device("cpu")) < 50 * 1024**2


# --------------------------------------------------------------------------- the report


def _result(ours, floor, peer_best, peak, shared=(1.0, 1.0), live=(0.05, 0.04)):
    def row(name, a, b, best=None, p=0):
        return {"name": name, "floor_batches": [1], "peer_label": "X" if best else "", "peer_best": [best] if best else [],
                "peer_best_setting": "k=1", "peak_ours": p, "peak_peer": 0,
                "medians": {"ours": a, "floor": b, "peer_default": best or float("nan"), "peer_best": best or float("nan")}}

    return {"model": "m", "device": "cpu", "device_name": "x", "threads": 2, "torch": "t", "image": "i", "target": 1,
            "repeats": 3, "quick": False, "rows": [row("a", ours, floor, peer_best, peak)],
            "extras": [row("shared", *shared), row("live", *live)], "oise_quality": None}


def test_the_report_marks_met_and_missed_targets():
    met = bench_report.markdown(_result(1.0, 1.0, 1.2, 10 * 1024**2))
    assert "✓ ≤1.15× floor" in met and "✓ ≤ peer fastest" in met and "✓ < 2 GB" in met and "✗" not in met
    missed = bench_report.markdown(_result(1.3, 1.0, 1.2, 3 * 1024**3, shared=(1.5, 1.0), live=(0.1, 0.04)))
    assert "✗ ≤1.15× floor" in missed and "✗ ≤ peer fastest" in missed and "✗ < 2 GB" in missed
    assert "✗ ≤ 1.3×" in missed and "+60 ms" in missed and "✗ ≤ +20 ms" in missed


# --------------------------------------------------------------------------- the command


def test_quick_run_on_the_shapes_model_writes_every_row(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = bench.main(["--quick", "--model", "shapes_cnn", "--repeats", "1", "--json", str(out),
                       "--methods", "gradient,integrated_gradients,active,oise,occlusion"])
    assert code == 0
    result = json.loads(out.read_text())
    names = [r["name"] for r in result["rows"]]
    assert names == ["gradient", "integrated_gradients", "active", "oise", "occlusion"]
    for row in result["rows"]:
        assert len(row["ours"]) == 1 and len(row["floor"]) == 1 and row["medians"]["ours"] > 0
    by_name = {r["name"]: r for r in result["rows"]}
    assert by_name["integrated_gradients"]["peer_best_setting"].startswith("internal_batch_size=")
    assert by_name["occlusion"]["peer_label"] == "Captum Occlusion" and not by_name["oise"]["peer_label"]
    printed = capsys.readouterr().out
    assert "| integrated_gradients |" in printed and "explain_many" in printed and "occlude" in printed


def test_unknown_methods_are_refused_with_the_known_ones(capsys):
    with pytest.raises(SystemExit):
        bench.main(["--methods", "gradient,nonsense"])
    assert "nonsense" in capsys.readouterr().err
