"""The folder audit on Ray (`python -m engines.audit ... --ray`): on a 2-CPU local Ray instance it
writes what the single-process audit writes, resumes a stopped run in either mode, and loses
nothing but a retry when an actor dies."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from engines.audit import image as audit_image  # noqa: E402
from engines.audit import on_ray  # noqa: E402
from engines.audit import report as audit_report  # noqa: E402
from engines.audit import run as audit  # noqa: E402
from engines.cli import shapes_test_set  # noqa: E402
from test_audit import (  # noqa: E402,F401,F811 (baseline: the single-process audit, the reference)
    METHODS, assert_same, baseline, interrupt_after_the_first_record, results, run)

GOOD = ["test_00000_circle.png", "test_00001_heart.png", "test_00002_square.png", "test_00003_circle.png"]
ONCE, ALWAYS = "test_00001_heart.png", "test_00002_square.png"  # images whose actor dies

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the dying actors below travel by value


@pytest.fixture(scope="module", autouse=True)
def ray_instance():
    """One 2-CPU local Ray instance for every test of this file, shut down at the end."""
    assert on_ray.connect("local", cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Four shapes test images with their masks, and a corrupt PNG."""
    root = tmp_path_factory.mktemp("images")
    assert shapes_test_set.main([str(root), "--count", str(len(GOOD))]) == 0
    (root / "broken.png").write_bytes(b"\x89PNG not really" + bytes(range(200)))
    return root


@pytest.fixture(scope="module")
def on_two_actors(folder, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ray")
    assert run(folder, out, "--ray", "--actors", "2") == 0
    return out


def test_the_ray_audit_writes_the_rows_maps_summary_and_bad_files_of_the_single_process_audit(on_two_actors,
                                                                                              baseline):
    assert_same(results(on_two_actors), results(baseline))
    for image in GOOD:
        for method in METHODS.split(","):
            stem = image.rsplit(".", 1)[0]
            mine, theirs = (np.load(out / "maps" / stem / f"{method}.npz") for out in (on_two_actors, baseline))
            np.testing.assert_allclose(mine["map"], theirs["map"], rtol=1e-5, atol=1e-7)
            assert np.array_equal(mine["image"], theirs["image"]) and str(mine["settings"]) == str(theirs["settings"])
            assert (on_two_actors / "maps" / stem / f"{method}.png").is_file()
    summary, reference = (json.loads((out / "summary.json").read_text()) for out in (on_two_actors, baseline))
    assert summary["bad_files"] == reference["bad_files"] and summary["bad_files"][0]["file"] == "broken.png"
    assert [m["images"] for m in summary["methods"]] == [len(GOOD)] * 3
    assert summary["run"]["device"] == "ray: 2 CPU actors" and summary["run"]["finished"]
    assert (on_two_actors / "summary.csv").read_text().splitlines()[0] == (baseline / "summary.csv").read_text(
        ).splitlines()[0]


def test_a_stopped_ray_run_resumes_in_one_process_and_a_stopped_one_process_run_on_ray(folder, baseline, tmp_path,
                                                                                       monkeypatch, capsys):
    interrupt_after_the_first_record(monkeypatch)
    assert run(folder, tmp_path / "a", "--ray", "--actors", "1") == 130
    interrupt_after_the_first_record(monkeypatch)
    assert run(folder, tmp_path / "b") == 130
    monkeypatch.undo()
    calls: list[list[str]] = []
    original = audit_image.explain_many
    monkeypatch.setattr(audit_image, "explain_many", lambda m, x, methods, *a, **k: calls.append(methods) or
                        original(m, x, methods, *a, **k))
    assert run(folder, tmp_path / "a") == 0
    assert len(calls) == len(GOOD) - 1  # the image the Ray run recorded is not explained again
    capsys.readouterr()
    assert run(folder, tmp_path / "b", "--ray", "--actors", "1") == 0
    err = capsys.readouterr().err
    assert f"{len(GOOD) - 1} with new work" in err
    left = len(GOOD)  # the bar counts the files with work left (3 images, and broken.png read again), with a rate
    assert "ray: 1 CPU actor: 100%" in err and f"{left}/{left} [" in err and ("image/s" in err or "s/image" in err)
    for out in ("a", "b"):
        assert_same(results(tmp_path / out), results(baseline))


class DyingActor(on_ray.AuditActor):
    """Exits its process (as a killed or out-of-memory worker would) on `ONCE` the first time it
    meets it and on `ALWAYS` every time, noting each death in `deaths/<image>`."""

    def __init__(self, *args, deaths: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.deaths = Path(deaths)

    def audit(self, item, job):
        name = item.file.name
        if name == ALWAYS or (name == ONCE and not (self.deaths / name).exists()):
            with (self.deaths / name).open("a") as deaths:
                deaths.write("died\n")
            os._exit(1)
        return super().audit(item, job)


@pytest.fixture(scope="module")
def dying(folder, tmp_path_factory) -> tuple[Path, Path, int, list[dict]]:
    """The Ray audit (called as `main` calls it) with `DyingActor`: (out, deaths, images done, bad files)."""
    out, deaths = tmp_path_factory.mktemp("dying"), tmp_path_factory.mktemp("deaths")
    files = audit.find_images(folder, exclude=out)
    settings = audit.parse_settings([], METHODS.split(","))
    wanted = audit.wanted_settings(settings, 8)
    audit_report.claim(out, "shapes_cnn")
    bad: list[dict] = []

    class Bound(DyingActor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, deaths=str(deaths), **kwargs)

    done, _ = on_ray.run("shapes_cnn", files, out, settings, wanted, audit.map_folders(files), bad, device="cpu",
                         actors=1, actor_class=Bound)
    audit_report.write_reports(out, METHODS.split(","), wanted, {}, bad)
    return out, deaths, done, bad


def test_an_image_whose_actor_died_is_retried_once_and_gives_the_same_rows(dying, baseline):
    out, deaths, _, bad = dying
    assert (deaths / ONCE).read_text() == "died\n"  # the actor did die on it, once
    assert ONCE not in [b["file"] for b in bad]
    assert_same([r for r in results(out) if r["image"] == ONCE], [r for r in results(baseline) if r["image"] == ONCE])


def test_an_image_whose_actor_dies_twice_is_reported_and_the_others_are_audited(dying, baseline):
    out, deaths, done, bad = dying
    assert (deaths / ALWAYS).read_text() == "died\n" * 2  # the first try and one retry
    assert done == len(GOOD) - 1
    assert sorted(b["file"] for b in bad) == ["broken.png", ALWAYS]
    assert "died twice" in next(b["reason"] for b in bad if b["file"] == ALWAYS)
    assert audit_report.read_record(out, ALWAYS) is None  # the next run tries it again
    assert_same(results(out), [r for r in results(baseline) if r["image"] != ALWAYS])


def test_an_unreachable_cluster_is_a_usage_error_naming_ray_start(folder, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(on_ray.ray, "is_initialized", lambda: False)
    monkeypatch.setattr(on_ray.ray, "init", lambda *a, **k: (_ for _ in ()).throw(ConnectionError("no cluster")))
    with pytest.raises(SystemExit) as stop:
        run(folder, tmp_path, "--ray", "10.0.0.1:6379")
    assert stop.value.code == 2 and "ray start --head" in capsys.readouterr().err


def test_without_ray_the_audit_never_imports_ray(folder, tmp_path):
    import subprocess

    code = ("import sys; from engines.audit import run; "
            f"run.main([{str(folder)!r}, '--model', 'shapes_cnn', '--methods', 'gradient', '--curve-steps', '4', "
            f"'--workers', '0', '--limit', '2', '--out', {str(tmp_path)!r}]); "
            "print('ray' in sys.modules, 'engines.audit.on_ray' in sys.modules)")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=Path(__file__).parents[1], env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert finished.stdout.split()[-2:] == ["False", "False"], finished.stderr


@pytest.mark.parametrize("resources, device, actors, expected", [
    ({"CPU": 32, "GPU": 4}, "auto", None, (4, 1.0)),  # one actor per GPU, one GPU each
    ({"CPU": 32, "GPU": 4}, "cpu", None, (32, 0.0)),  # --device cpu: CPU actors on a GPU cluster
    ({"CPU": 2}, "auto", None, (2, 0.0)),  # no GPU: one actor per CPU
    ({"CPU": 8, "GPU": 2}, "cuda", 1, (1, 1.0)),  # --actors wins
])
def test_the_pool_has_one_gpu_per_actor_where_there_are_gpus_and_cpu_actors_otherwise(monkeypatch, resources, device,
                                                                                      actors, expected):
    monkeypatch.setattr(on_ray.ray, "cluster_resources", lambda: resources)
    assert on_ray.pool(device, actors) == expected


def test_asking_for_cuda_on_a_cluster_without_gpus_is_refused(monkeypatch):
    monkeypatch.setattr(on_ray.ray, "cluster_resources", lambda: {"CPU": 4})
    with pytest.raises(on_ray.RayUnavailable, match="no GPU"):
        on_ray.pool("cuda", None)
