"""One file registers a method; the picker, the audit, the benchmark and the contract tests find it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

import engines
from engines.audit import run as audit
from engines.bench import run as bench
from engines.core.registry import unregister
from engines.models import catalogue as models
from engines.models import shapes

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def throwaway():
    import throwaway_method  # noqa: F401  (registers it, once per process)

    if throwaway_method.NAME not in engines.methods():  # an earlier test unregistered it
        import importlib

        importlib.reload(throwaway_method)
    yield throwaway_method.NAME
    unregister(throwaway_method.NAME)


def test_its_family_comes_from_its_registration(throwaway):
    assert engines.method_families()[-1] == "scratch" and engines.method_info(throwaway).family == "scratch"


def test_the_explore_picker_offers_it_under_its_family(throwaway, monkeypatch):
    monkeypatch.setattr(models.LoadedModel, "estimate_seconds", lambda self, cost: 0.5)
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=300)
    at.run()
    picker = at.pills(key="methods.scratch")
    assert picker.options == [engines.method_info(throwaway).label]
    before = len(at.get("plotly_chart"))
    picker.set_value([throwaway]).run()
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == before + 1  # its map is drawn beside the others


def test_the_audit_computes_and_scores_it(throwaway, tmp_path):
    shapes.write_test_set(tmp_path / "images", 2)
    code = audit.main([str(tmp_path / "images"), "--model", "shapes_cnn", "--device", "cpu", "--methods", throwaway,
                       "--curve-steps", "4", "--workers", "0", "--out", str(tmp_path / "out")])
    assert code == 0
    rows = json.loads((tmp_path / "out" / "results.json").read_text())
    assert len(rows) == 2 and {r["method"] for r in rows} == {throwaway}


def test_the_benchmark_times_it_against_its_floor(throwaway, tmp_path):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--model", "shapes_cnn", "--repeats", "1", "--json", str(out), "--methods", throwaway]) == 0
    (row,) = json.loads(out.read_text())["rows"]
    assert row["name"] == throwaway and row["settings"] == {"power": 1} and row["medians"]["floor"] > 0


def test_the_contract_tests_run_on_it():
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "throwaway_method", "-k", "throwaway", "-p", "no:cacheprovider",
         str(ROOT / "tests" / "test_contract.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    passed = int(done.stdout.strip().splitlines()[-1].split(" passed")[0].split()[-1])
    assert passed >= 6  # shapes, determinism, batching, untouched model, record, pass count
