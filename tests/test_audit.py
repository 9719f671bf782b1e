"""The folder audit (`python -m engines.audit`): every map and number it writes is the engines' own,
bad files are reported and skipped, and a stopped run resumes without recomputing what it has."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import engines
from engines.audit import run as audit
from engines.audit import image as audit_image
from engines.audit import report as audit_report
from engines.models import shapes
from engines.audit.files import crop_like_model, find_images
from engines.models.catalogue import LoadedModel, catalogue

METHODS = "gradient,positive,occlusion"
WRITE_RECORD = audit_report.write_record  # the real one, whatever a test has patched in
GOOD = ["sub/test_00003_circle.png", "sub/test_00004_arrow.png", "test_00000_circle.png",
        "test_00001_heart.png", "test_00002_square.png"]
WITHOUT_MASK = "test_00002_square.png"
TIMINGS = ("seconds", "curve_seconds")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """Five shapes test images (two in a subfolder, one without its mask), a corrupt PNG and a text file."""
    root = tmp_path_factory.mktemp("images")
    shapes.write_test_set(root, 5)
    (root / "sub").mkdir()
    for path in root.glob("test_0000[34]_*"):
        path.rename(root / "sub" / path.name)
    (root / "test_00002_square.mask.png").unlink()
    (root / "broken.png").write_bytes(b"\x89PNG not really" + bytes(range(200)))
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def model():
    return engines.load_model("shapes_cnn", device="cpu")


def run(folder: Path, out: Path, *extra: str) -> int:
    return audit.main([str(folder), "--model", "shapes_cnn", "--device", "cpu", "--methods", METHODS,
                       "--curve-steps", "8", "--workers", "0", "--out", str(out), *extra])


@pytest.fixture(scope="module")
def baseline(folder, tmp_path_factory) -> Path:
    """One uninterrupted run, every test's reference."""
    out = tmp_path_factory.mktemp("baseline")
    assert run(folder, out) == 0
    return out


def results(out: Path) -> list[dict]:
    """The rows of results.json without the timings (which differ from run to run)."""
    rows = json.loads((out / "results.json").read_text())
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def assert_same(rows: list[dict], expected: list[dict]) -> None:
    """Equal rows, numbers to float rounding (passes run in chunks whose size is measured)."""
    assert len(rows) == len(expected)
    for row, other in zip(rows, expected):
        assert row.keys() == other.keys()
        for key, value in row.items():
            if isinstance(value, float):
                assert value == pytest.approx(other[key], abs=1e-6), (row["image"], row["method"], key)
            else:
                assert value == other[key], (row["image"], row["method"], key)


def interrupt_after_the_first_record(monkeypatch) -> None:
    """Make the driver stop (as Ctrl-C would) right after writing its first record."""
    written = []
    original = WRITE_RECORD

    def interrupt(out, record):
        if written:
            raise KeyboardInterrupt
        written.append(record["image"])
        original(out, record)

    monkeypatch.setattr(audit_report, "write_record", interrupt)


def count_explain_many(monkeypatch) -> list[list[str]]:
    """Record the methods of every `explain_many` call the audit makes."""
    calls: list[list[str]] = []
    original = audit_image.explain_many

    def counting(model, x, methods, *args, **kwargs):
        calls.append(list(methods))
        return original(model, x, methods, *args, **kwargs)

    monkeypatch.setattr(audit_image, "explain_many", counting)
    return calls


# --------------------------------------------------------------------------- what one run writes


def test_every_good_image_and_method_has_an_overlay_a_raw_map_and_a_row(baseline):
    rows = results(baseline)
    assert sorted((r["image"], r["method"]) for r in rows) == sorted(
        (image, method) for image in GOOD for method in METHODS.split(","))
    for image in GOOD:
        for method in METHODS.split(","):
            stem = baseline / "maps" / image.rsplit(".", 1)[0]
            picture = np.asarray(Image.open(stem / f"{method}.png"))
            assert picture.shape == (64, 64, 3)
            assert np.load(stem / f"{method}.npz")["map"].shape == (64, 64)
    assert all(r["error"] is None and r["model"] == "shapes_cnn" for r in rows)


def test_maps_and_metrics_are_what_the_engines_give_for_the_same_input(baseline, folder, model):
    _, _, masks = shapes.make_dataset(5, shapes.TEST_SEED)
    for row in results(baseline):
        image = row["image"]
        x = model.preprocess(engines.read_image(folder / image))  # (1, 3, 64, 64)
        saved = np.load(baseline / "maps" / image.rsplit(".", 1)[0] / f"{row['method']}.npz")
        expected = engines.explain(model, x, row["method"])
        # equal up to float rounding: the pass module batches the passes in chunks it measures
        np.testing.assert_allclose(saved["map"], expected.map[0].numpy(), rtol=1e-5, atol=1e-7)
        assert np.array_equal(saved["image"], np.round(x[0].numpy() * 255).astype(np.uint8))
        assert int(saved["target"]) == row["target"] == row["predicted_class"] == int(expected.target[0])
        assert json.loads(str(saved["settings"]))["settings"] == engines.method_info(row["method"]).defaults()
        probability = engines.predict(model, x).probabilities[0, row["target"]].item()
        assert row["probability"] == pytest.approx(probability, abs=1e-7)
        assert row["predicted_name"] == shapes.CLASSES[row["target"]]
        saliency = torch.from_numpy(saved["map"])[None]
        deletion = engines.deletion_curve(model, x, saliency, steps=8, fill="black")
        assert row["deletion_auc"] == pytest.approx(deletion.auc.item(), abs=1e-6)
        assert row["insertion_auc"] == pytest.approx(engines.insertion_curve(model, x, saliency, steps=8).auc.item(),
                                                     abs=1e-6)
        for fill in ("black", "white"):
            assert row[f"allegiance_{fill}_auc"] == engines.allegiance_curve(model, x, saliency, fill=fill).auc.item()
        for order in ("most", "least"):
            road = engines.road_curve(model, x, saliency, order)
            assert row[f"road_{order}_auc"] == pytest.approx(road.auc.item(), abs=1e-6)
        if image == WITHOUT_MASK:
            assert row["pointing_game"] is None and row["relevance_mass"] is None
            assert row["pointing_game_tolerant"] is None
        else:
            mask = masks[int(Path(image).name[5:10])]  # the generator's own mask (64 px: no resizing)
            assert row["pointing_game"] == bool(engines.pointing_game(saliency, mask)[0])
            assert row["pointing_game_tolerant"] == bool(engines.pointing_game(saliency, mask, tolerance=4)[0])
            assert row["relevance_mass"] == pytest.approx(engines.relevance_mass(saliency, mask).item(), rel=1e-6)


def test_a_corrupt_file_is_reported_with_its_reason_and_a_text_file_is_ignored(baseline):
    summary = json.loads((baseline / "summary.json").read_text())
    assert [bad["file"] for bad in summary["bad_files"]] == ["broken.png"]
    assert "not an image" in summary["bad_files"][0]["reason"]
    assert all(entry["images"] == len(GOOD) and entry["errors"] == 0 for entry in summary["methods"])
    assert "notes" not in (baseline / "results.csv").read_text()


def test_the_summary_means_are_the_means_of_the_rows(baseline):
    rows = results(baseline)
    summary = json.loads((baseline / "summary.json").read_text())
    for entry in summary["methods"]:
        mine = [r for r in rows if r["method"] == entry["method"]]
        for metric in audit_report.METRICS:
            values = [float(r[metric]) for r in mine if r[metric] is not None]
            assert entry[metric]["n"] == len(values) == (len(GOOD) - 1 if metric in audit_report.MASK_METRICS
                                                                 else len(GOOD))
            assert entry[metric]["mean"] == pytest.approx(np.mean(values), abs=1e-12)
            assert entry[metric]["std"] == pytest.approx(np.std(values, ddof=1), abs=1e-12)
    csv_lines = (baseline / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("method,images,errors,deletion_auc_n,deletion_auc_mean")
    assert len(csv_lines) == 1 + len(METHODS.split(","))


# --------------------------------------------------------------------------- resuming


def test_an_interrupted_run_resumes_with_only_the_missing_images_and_ends_as_an_uninterrupted_one(
        folder, baseline, tmp_path, monkeypatch):
    interrupt_after_the_first_record(monkeypatch)
    assert run(folder, tmp_path) == 130
    partial = json.loads((tmp_path / "summary.json").read_text())
    assert not partial["run"]["finished"] and partial["methods"][0]["images"] == 1
    monkeypatch.setattr(audit_report, "write_record", WRITE_RECORD)
    calls = count_explain_many(monkeypatch)
    assert run(folder, tmp_path) == 0
    assert len(calls) == len(GOOD) - 1  # the first image is not explained again
    assert_same(results(tmp_path), results(baseline))
    calls.clear()
    assert run(folder, tmp_path) == 0 and calls == []  # nothing left to do


def test_a_method_added_later_is_the_only_one_computed(folder, baseline, tmp_path, monkeypatch):
    assert audit.main([str(folder), "--model", "shapes_cnn", "--device", "cpu", "--methods", "gradient,positive",
                       "--curve-steps", "8", "--workers", "0", "--out", str(tmp_path)]) == 0
    calls = count_explain_many(monkeypatch)
    assert run(folder, tmp_path) == 0
    assert calls == [["occlusion"]] * len(GOOD)
    assert_same(results(tmp_path), results(baseline))


def test_changed_settings_recompute_that_method_only(folder, baseline, tmp_path, monkeypatch):
    shutil.copytree(baseline, tmp_path, dirs_exist_ok=True)
    calls = count_explain_many(monkeypatch)
    assert run(folder, tmp_path, "--set", "occlusion.window=16") == 0
    assert calls == [["occlusion"]] * len(GOOD)
    rows = json.loads((tmp_path / "results.json").read_text())
    saved = np.load(tmp_path / "maps" / "test_00000_circle" / "occlusion.npz")
    assert json.loads(str(saved["settings"]))["settings"]["window"] == 16
    assert len(rows) == len(GOOD) * 3  # the tables show this run's settings only


# --------------------------------------------------------------------------- refusals


def test_a_folder_made_with_another_model_is_refused_with_what_to_do(folder, baseline, capsys):
    before = (baseline / "results.json").read_text()
    with pytest.raises(SystemExit) as stop:
        audit.main([str(folder), "--model", "efficientnet_lite0", "--out", str(baseline)])
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert "'shapes_cnn'" in message and "--fresh" in message and "--out" in message
    assert (baseline / "results.json").read_text() == before


def test_fresh_deletes_the_previous_results_of_any_model_and_nothing_else(folder, baseline, tmp_path):
    shutil.copytree(baseline, tmp_path, dirs_exist_ok=True)
    (tmp_path / "run.json").write_text(json.dumps({"model": "another"}))
    (tmp_path / "notes.md").write_text("the user's own file")
    assert audit.main([str(folder), "--model", "shapes_cnn", "--methods", "gradient", "--curve-steps", "8",
                       "--workers", "0", "--limit", "2", "--fresh", "--out", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "run.json").read_text())["model"] == "shapes_cnn"
    assert [r["image"] for r in results(tmp_path)] == GOOD[:1]  # the first two files: broken.png is bad
    assert sorted(p.name for p in (tmp_path / "maps").rglob("*.npz")) == ["gradient.npz"]
    assert (tmp_path / "notes.md").exists()


@pytest.mark.parametrize("setting, named", [
    ("occlusion.window=abc", "window"), ("occlusion.window=0", "window"), ("occlusion.size=3", "size"),
    ("occlusion.fill=purple", "fill"), ("occlusion=3", "method.param=value"), ("smoothgrad.samples=4", "smoothgrad"),
])
def test_a_bad_setting_fails_before_any_work_naming_the_parameter(folder, tmp_path, monkeypatch, capsys, setting,
                                                                   named):
    monkeypatch.setattr(audit, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as stop:
        run(folder, out, "--set", setting)
    assert stop.value.code == 2 and named in capsys.readouterr().err
    assert not out.exists()


def test_settings_are_parsed_with_each_parameters_kind():
    settings = audit.parse_settings(["integrated_gradients.steps=8", "integrated_gradients.rule=riemann_left",
                                     "active.rivals=none", "smoothgrad.noise=0.2"],
                                    ["integrated_gradients", "active", "smoothgrad"])
    assert settings["integrated_gradients"]["steps"] == 8 and isinstance(settings["integrated_gradients"]["steps"], int)
    assert settings["integrated_gradients"]["rule"] == "riemann_left"
    assert settings["active"]["rivals"] is None and settings["smoothgrad"]["noise"] == 0.2
    assert settings["smoothgrad"]["samples"] == engines.method_info("smoothgrad").defaults()["samples"]


def test_an_unknown_method_is_a_usage_error_listing_the_known_ones(folder, tmp_path, capsys):
    with pytest.raises(SystemExit):
        audit.main([str(folder), "--methods", "gradient,bogus", "--out", str(tmp_path)])
    error = capsys.readouterr().err
    assert "bogus" in error and "integrated_gradients" in error


# --------------------------------------------------------------------------- loading


def test_worker_processes_give_the_same_results_as_the_main_process(folder, baseline, tmp_path):
    assert run(folder, tmp_path, "--workers", "2") == 0
    assert_same(results(tmp_path), results(baseline))
    for image in GOOD:
        stem = image.rsplit(".", 1)[0]
        np.testing.assert_allclose(np.load(tmp_path / "maps" / stem / "occlusion.npz")["map"],
                                   np.load(baseline / "maps" / stem / "occlusion.npz")["map"], rtol=1e-5, atol=1e-7)


def test_images_are_found_in_order_with_their_masks_and_the_output_folder_left_out(folder, baseline):
    shutil.copytree(baseline / "maps", folder / "out" / "maps")
    try:
        found = find_images(folder, exclude=folder / "out")
    finally:
        shutil.rmtree(folder / "out")
    assert [f.name for f in found] == ["broken.png", *GOOD]
    assert {f.name for f in found if f.mask is None} == {"broken.png", WITHOUT_MASK}
    assert all(f.mask is None or f.mask.name == f.path.stem + ".mask.png" for f in found)
    only = find_images(folder, include=["sub/*", "broken.*"])
    assert [f.name for f in only] == ["broken.png", *[g for g in GOOD if g.startswith("sub/")]]
    assert [g for g in GOOD if g.startswith("sub/")]  # the folder fixture has a subfolder


def test_a_mask_is_cropped_exactly_as_the_model_crops_its_image():
    spec = catalogue()["efficientnet_lite0"]  # resize 256, centre crop 224: not the identity
    loaded = LoadedModel("efficientnet_lite0", None, [], spec, torch.device("cpu"))
    mask = torch.zeros(300, 420, dtype=torch.bool)
    mask[40:200, 10:150] = True
    mask[250:, 380:] = True  # falls outside the crop
    picture = Image.fromarray(mask.numpy().astype(np.uint8) * 255).convert("RGB")
    seen = loaded.preprocess(picture)[0, 0] > 0.5  # (224, 224)
    cropped = crop_like_model(mask, spec.resize, spec.input_size)
    assert cropped.shape == seen.shape == (224, 224)
    assert (cropped == seen).float().mean() > 0.99  # the two differ only along the edges (bilinear vs nearest)


# --------------------------------------------------------------------------- the shapes test set as files


def test_write_test_set_writes_the_generators_images_and_masks(tmp_path):
    paths = shapes.write_test_set(tmp_path, 3)
    images, labels, masks = shapes.make_dataset(3, shapes.TEST_SEED)
    assert [p.name for p in paths] == [f"test_{i:05d}_{shapes.CLASSES[int(labels[i])]}.png" for i in range(3)]
    assert len(list(tmp_path.iterdir())) == 6
    for i, path in enumerate(paths):
        picture = np.asarray(Image.open(path)).transpose(2, 0, 1) / 255.0  # (3, H, W)
        assert np.abs(picture - images[i].numpy()).max() <= 0.5 / 255 + 1e-6
        mask = np.asarray(Image.open(path.with_name(path.stem + ".mask.png")))
        assert np.array_equal(mask > 127, masks[i].numpy()) and set(np.unique(mask)) <= {0, 255}


def test_the_test_set_command_writes_count_pairs(tmp_path, capsys):
    from engines.cli import shapes_test_set

    assert shapes_test_set.main([str(tmp_path / "set"), "--count", "2"]) == 0
    assert len(list((tmp_path / "set").glob("*.mask.png"))) == 2
