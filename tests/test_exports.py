"""Exported files: they open, hold what the page showed, and the report is self-contained."""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from dashboard import exports, views


def picture(seed=0, size=(24, 32)):
    return (np.random.default_rng(seed).random((*size, 3)) * 255).astype(np.uint8)


def test_a_map_that_is_zero_leaves_the_image_untouched():
    image = picture()
    for signed in (True, False):
        saliency = np.zeros(image.shape[:2])
        saliency[0, 0] = 1.0  # one salient pixel, so the scale is not degenerate
        out = views.overlay_rgb(image, saliency, signed=signed, opacity=1.0)
        assert np.array_equal(out[1:], image[1:]) and not np.array_equal(out[0, 0], image[0, 0])


def test_grid_png_holds_one_tile_per_map():
    image = picture()
    maps = {name: (name, np.random.default_rng(i).standard_normal((24, 32)), True) for i, name in enumerate("abcd")}
    sheet = np.asarray(Image.open(io.BytesIO(exports.grid_png(image, maps, tile=100, columns=3))))
    assert sheet.shape == (2 * (100 + 22), 300, 3)  # 3 columns, 2 rows of label + tile
    tiles = [sheet[r * 122 + 22 : r * 122 + 22 + 75, c * 100 : (c + 1) * 100] for r, c in [(0, 0), (0, 1), (0, 2), (1, 0)]]
    assert all((tile != 255).any() for tile in tiles)  # four maps drawn
    assert (sheet[122 + 22 :, 100:] == 255).all()  # and nothing where a fifth would go


def test_npz_round_trips_the_raw_maps_and_settings():
    maps = {"gradient": np.random.default_rng(1).random((5, 6)).astype(np.float32)}
    data = np.load(io.BytesIO(exports.maps_npz(maps, {"settings": {"gradient": {"reduce": "max_abs"}}})))
    assert np.array_equal(data["gradient"], maps["gradient"])
    assert json.loads(str(data["metadata"]))["settings"]["gradient"]["reduce"] == "max_abs"


def test_metrics_csv_and_json_carry_every_column():
    rows = [{"method": "gradient", "deletion_auc": 0.1}, {"method": "positive", "deletion_auc": 0.2, "extra": 1}]
    text = exports.metrics_csv(rows).splitlines()
    assert text[0] == "method,deletion_auc,extra" and text[2].startswith("positive,0.2")
    assert json.loads(exports.metrics_json(rows, {"model": "m"}))["metrics"][1]["extra"] == 1


def test_html_report_is_self_contained_and_escaped():
    image = picture()
    report = exports.html_report(
        title="Why <model> sees it", image=image, model="EfficientNet <Lite0>", prediction=[("cat & dog", 0.5)],
        target="cat", maps={"gradient": ("Gradient", np.random.default_rng(2).random((24, 32)), False)},
        settings={"gradient": {"reduce": "max_abs"}}, metrics=[{"method": "gradient", "deletion_auc": 0.123456}],
    )
    assert "<model>" not in report and "&lt;model&gt;" in report and "cat &amp; dog" in report
    assert report.count("data:image/png;base64,") == 2  # the input and one map, inline
    assert "http" not in report.replace("http-equiv", "")  # nothing fetched from elsewhere
    assert "0.1235" in report and "max_abs" in report
