"""The lane and thread-policy benchmarks' tables: targets marked from the numbers given."""

from __future__ import annotations

from engines.bench import lane as bench_lane
from engines.bench import threads as bench_threads
from engines.core.panel import FIRST_SCREEN


def test_percentiles_interpolate_between_ranks():
    assert bench_lane._percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0
    assert bench_lane._percentile([0.0, 10.0], 0.95) == 9.5


def test_the_lane_tables_mark_each_target_met_or_missed():
    shared = {"idle_p50": 0.05, "idle_calls": 10, "serial": {}, "rows": [
        {"sessions": 2, "serial": 10.0, "serial_panels": 8.0, "slider_work": 2.0, "wall": 10.5,
         "throughput": 10 / 10.5, "panels_throughput": 8 / 10.5, "slider_p50": 0.1, "slider_p95": 0.5,
         "slider_calls": 40, "idle_p50": 0.05, "relative_difference": 2e-4, "worst_map": "chelsea/oise",
         "finished": {}}]}
    screen = {"methods": list(FIRST_SCREEN), "first": {m: 0.5 for m in FIRST_SCREEN},
              "final": {m: 2.0 for m in FIRST_SCREEN}, "total": 12.0}
    text = bench_lane.markdown({"shared": shared, "first_screen": screen, "methods": [
        {"method": "occlusion", "first": 0.3, "final": 3.0, "without": 2.9, "previews": 5}]})
    assert "✓ ≥ 0.9×" in text and "✗ p95 ≤ idle p50 + 0.3 s" in text and "✓ same maps" in text
    assert "| 2 | 8.00 s + 2.00 s | 10.50 s | 0.95× | 0.76× |" in text  # the slider's work counts as work
    assert "2.0e-04 (chelsea/oise)" in text
    assert "✗ final ≤ 10 s" in text and "✓ first ≤ 1.5 s" in text and "1.03×" in text


def test_the_thread_table_divides_by_the_bare_process():
    rows = [{"label": bench_threads.BARE, "policy": "(not set)", "threads": 2, "idle": 0.05, "busy": 1.0},
            {"label": "engines default", "policy": "openmp, threads auto", "threads": 2, "idle": 0.055, "busy": 0.08}]
    text = bench_threads.markdown({"rows": rows})
    assert "| engines default | openmp, threads auto | 2 | 55 ms | 1.10× | 80 ms | 0.08× |" in text
