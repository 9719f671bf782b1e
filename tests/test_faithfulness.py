"""python -m engines.faithfulness: ours and each peer scored by the same curves, in one run."""

from __future__ import annotations

import json

import torch

import engines
from engines.faithfulness import data, run
from engines.faithfulness.scoring import mean_and_error


def test_the_quick_run_scores_ours_and_every_comparable_peer_with_the_same_metrics(tmp_path, capsys):
    out = tmp_path / "f.json"
    assert run.main(["--quick", "--methods", "gradient,rise", "--shapes", "2", "--views", "0", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    linear = report["families"]["linear"]["shapes"]["gradient"]
    mask = report["families"]["mask"]["shapes"]["rise"]
    assert set(linear) == {"ours", "Captum Saliency"} and set(mask) == {"ours", "TorchRay rise"}
    for row in (*linear.values(), *mask.values()):
        assert row["n"] == 2 and set(row["metrics"]) == {"deletion", "insertion", "road_most", "road_least", "pointing",
                                                          "pointing_tolerant", "relevance_mass"}
    # Captum's Saliency computes our gradient map exactly, so every score is the same.
    for metric, (mean, _) in linear["ours"]["metrics"].items():
        assert abs(mean - linear["Captum Saliency"]["metrics"][metric][0]) < 1e-6, metric
    text = capsys.readouterr().out
    assert "### linear" in text and "### mask" in text and "TorchRay rise" in text


def test_contenders_are_the_peers_whose_comparable_says_so():
    info = engines.method_info("smoothgrad")
    labels = [label for label, _ in run.contenders("smoothgrad", info.settings({"variant": "squared"}), (8, 8))]
    assert labels[0] == "ours" and len(labels) == 2 and "smoothgrad_sq" in labels[1]


def test_photo_views_are_distinct_images_of_the_models_input_size():
    loaded = engines.load_model("shapes_cnn", device="cpu")  # 64² input: cheap
    views = data.photo_views(loaded, 3, ["chelsea"])
    assert views.images.shape == (3, 3, 64, 64) and len(views.names) == 3
    torch.testing.assert_close(views.images[1], views.images[0].flip(-1))  # the flip of a centre crop
    assert not torch.allclose(views.images[2], views.images[0])


def test_mean_and_error_is_the_mean_and_the_standard_error_of_the_finite_values():
    mean, error = mean_and_error(torch.tensor([1.0, 2.0, 3.0, float("nan")]))
    assert mean == 2.0 and abs(error - 1.0 / 3**0.5) < 1e-9


def test_a_default_choice_reports_each_candidate_and_its_paired_gain_over_the_first():
    from engines.faithfulness.defaults import Choice, measure

    loaded = engines.load_model("shapes_cnn", device="cpu")
    choice = Choice("fill", "occlusion", {"grey": {"fill": "grey"}, "black": {"fill": "black"},
                                          "rise 4": {"method": "rise", "masks": 4}})
    result = measure(choice, data.shapes_set(2), loaded, road=False, steps=4)
    assert list(result) == ["grey", "black", "rise 4"]
    assert result["grey"]["insertion_gain"][0] == 0.0
    gain = result["black"]["metrics"]["insertion"][0] - result["grey"]["metrics"]["insertion"][0]
    assert abs(result["black"]["insertion_gain"][0] - gain) < 1e-6
    assert {"pointing", "pointing_tolerant", "relevance_mass"} <= set(result["rise 4"]["metrics"])
