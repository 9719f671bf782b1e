"""The Data set page (dashboard/app_pages/dataset.py) under AppTest, on an audit folder made here
with the shapes CNN: summary table, one distribution per metric, the most and least faithful
maps, clusters per class, the HTML export, and only folders under the configured root."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

import engines
from dashboard import dataset_views, state
from engines.audit import run as audit
from engines.cli import shapes_test_set

PAGE = str(Path(__file__).resolve().parent.parent / "dashboard" / "app_pages" / "dataset.py")
TIMEOUT = 300
METHODS = ["gradient", "occlusion"]
COUNT = 24


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """An audits root with one audit of 24 shapes images (and a corrupt file), and one folder that is not an audit."""
    base = tmp_path_factory.mktemp("audits")
    images = tmp_path_factory.mktemp("images")
    shapes_test_set.main([str(images), "--count", str(COUNT)])
    (images / "broken.png").write_bytes(b"not a png")
    assert audit.main([str(images), "--model", "shapes_cnn", "--device", "cpu", "--methods", ",".join(METHODS),
                       "--curve-steps", "8", "--workers", "0", "--out", str(base / "shapes")]) == 0
    (base / "notes").mkdir()
    return base


@pytest.fixture
def page(root, monkeypatch) -> AppTest:
    monkeypatch.setenv(engines.AUDITS_VARIABLE, str(root))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    return at


def figures(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


def test_only_audit_folders_under_the_root_are_offered(page):
    assert page.selectbox(key=state.DATASET_FOLDER).options == ["shapes"]


def test_the_summary_has_a_row_per_method_with_the_audits_means(page, root):
    table = next(d.value for d in page.dataframe if "Method" in d.value.columns)
    assert list(table["Method"]) == [engines.method_info(m).label for m in METHODS]
    summary = json.loads((root / "shapes" / "summary.json").read_text())
    for index, entry in enumerate(summary["methods"]):
        assert table.iloc[index]["Deletion AUC (↓ better)"] == pytest.approx(entry["deletion_auc"]["mean"])
        assert table.iloc[index]["Images"] == COUNT


def test_each_metric_has_a_box_per_method_holding_every_image(page, root):
    boxes = [f for f in figures(page) if f["data"] and f["data"][0]["type"] == "box"]
    assert len(boxes) == len(engines.AUDIT_METRICS)
    rows = json.loads((root / "shapes" / "results.json").read_text())
    deletion = next(f for f in boxes if "Deletion" in f["layout"]["title"]["text"])
    assert [len(trace["y"]) for trace in deletion["data"]] == [COUNT] * len(METHODS)
    expected = sorted(r["deletion_auc"] for r in rows if r["method"] == "gradient")
    assert sorted(deletion["data"][0]["y"]) == pytest.approx(expected)


def test_most_and_least_faithful_show_the_extreme_images_by_the_chosen_metric(page, root):
    page.selectbox(key=state.DATASET_METRIC).set_value("insertion_auc")
    page.slider(key=state.DATASET_COUNT).set_value(2).run()
    assert not page.exception
    rows = [r for r in json.loads((root / "shapes" / "results.json").read_text()) if r["method"] == "gradient"]
    best = max(rows, key=lambda r: r["insertion_auc"])["image"]
    worst = min(rows, key=lambda r: r["insertion_auc"])["image"]
    texts = " ".join(m.value for m in page.markdown)
    assert "Most faithful" in texts and "Least faithful" in texts
    shown = [img.caption for element in page.get("image") for img in element.proto.imgs]
    assert any(c.startswith(best) for c in shown) and any(c.startswith(worst) for c in shown)


def test_clusters_of_a_class_show_a_mean_map_and_members_of_that_class(page, root):
    classes = page.selectbox(key=state.DATASET_CLASS).options
    assert classes and all("images)" in c for c in classes)
    page.selectbox(key=state.DATASET_CLUSTERS).set_value(2).run()
    assert not page.exception and not page.error
    texts = [m.value for m in page.markdown]
    assert sum(t.startswith("**Cluster") for t in texts) == 2
    shown = [img.caption for element in page.get("image") for img in element.proto.imgs]
    means = [c for c in shown if c.startswith("cluster ")]
    assert len(means) == 2
    sizes = [int(c.split("mean of ")[1].split()[0]) for c in means]
    class_name = page.selectbox(key=state.DATASET_CLASS).value
    rows = json.loads((root / "shapes" / "results.json").read_text())
    members = [r["image"] for r in rows if r["method"] == "gradient" and r["predicted_name"] == class_name]
    assert sum(sizes) == len(members)


def test_the_html_export_holds_the_tables_figures_and_images_escaped(page):
    (button,) = page.get("download_button")
    assert button.proto.label == "Download this page as HTML"
    figure = dataset_views.metric_boxes({"Gradient": [0.1, 0.2], "Occlusion": [0.3]}, title="Deletion <AUC>")
    picture = np.zeros((4, 4, 3), dtype=np.uint8)
    text = dataset_views.html_report(title="Audit <x>", facts="Model m.", tables=[("Summary", [{"Method": "a&b",
                                     "Value": 0.123456}])], charts=[("Box", figure), ("Again", figure)],
                                     galleries=[("Most faithful", [(picture, "img<1>.png")])])
    assert text.count("plotly.js v") == 1  # inline, once
    assert text.count("Plotly.newPlot") == 2
    assert "<td>a&amp;b</td><td>0.1235</td>" in text and "Audit &lt;x&gt;" in text
    assert "data:image/png;base64," in text and "img&lt;1&gt;.png" in text


def test_a_root_without_audits_says_how_to_make_one(tmp_path, monkeypatch):
    monkeypatch.setenv(engines.AUDITS_VARIABLE, str(tmp_path))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "python -m engines.audit" in at.info[0].value


def test_a_name_outside_the_list_is_refused(root):
    with pytest.raises(engines.AuditFolderError, match="not an audit folder"):
        engines.open_audit(root, "../")
    with pytest.raises(engines.AuditFolderError):
        engines.open_audit(root, "notes")
    assert engines.list_audits(root) == ["shapes"]


def test_an_audit_reads_back_its_maps_and_ranks_by_each_metrics_direction(root):
    opened = engines.open_audit(root, "shapes")
    rows = [r for r in opened.rows if r["method"] == "gradient"]
    best, worst = opened.extremes("gradient", "deletion_auc", 3)
    assert [r["deletion_auc"] for r in best] == sorted(r["deletion_auc"] for r in rows)[:3]
    assert [r["deletion_auc"] for r in worst] == sorted((r["deletion_auc"] for r in rows), reverse=True)[:3]
    saved = opened.load_map(rows[0]["image"], "gradient")
    raw = np.load(root / "shapes" / "maps" / Path(rows[0]["image"]).stem / "gradient.npz")
    assert np.array_equal(saved.map, raw["map"]) and saved.image.shape == (64, 64, 3)
    assert saved.target == rows[0]["target"] and not saved.signed



def test_every_audit_metric_has_a_direction_and_a_name_on_the_page():
    """A metric the audit writes must be rankable (best first) and named on the Data set page."""
    import ast
    from pathlib import Path

    import engines

    assert set(engines.LOWER_IS_BETTER) == set(engines.AUDIT_METRICS)
    page = Path(__file__).resolve().parent.parent / "dashboard" / "app_pages" / "dataset.py"
    names = next(node.value for node in ast.parse(page.read_text()).body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "METRIC_NAMES")
    assert {k.value for k in names.keys} == set(engines.AUDIT_METRICS)
