"""The dashboard's map store: reuse across method sets, and cancelling keeps nothing partial."""

from __future__ import annotations

import json

import pytest
import torch

import engines
from dashboard import resources

KEY = ("shapes_cnn", "cpu")


@pytest.fixture
def image():
    resources._map_store.clear()
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    return engines.image_digest(x.numpy().tobytes()), x


def test_a_cancelled_run_stores_nothing_and_can_run_again(image):
    digest, x = image
    settings = json.dumps({"smoothgrad": {"samples": 8}, "gradient": {}})

    def cancel(done, total):
        raise engines.Cancelled

    with pytest.raises(engines.Cancelled):
        resources.maps(*KEY, digest, x, ("gradient", "smoothgrad"), settings, None, progress=cancel)
    assert resources.missing_maps(*KEY, digest, ("gradient", "smoothgrad"), settings, None) == ["gradient", "smoothgrad"]
    done = resources.maps(*KEY, digest, x, ("gradient", "smoothgrad"), settings, None)
    assert set(done) == {"gradient", "smoothgrad"} and all(r is not None for r in done.values())


def test_adding_a_method_computes_only_that_one(image, monkeypatch):
    digest, x = image
    resources.maps(*KEY, digest, x, ("gradient",), "{}", None)
    asked = []
    original = engines.explain_many
    monkeypatch.setattr(engines, "explain_many", lambda *a, **k: asked.append(list(a[2])) or original(*a, **k))
    resources.maps(*KEY, digest, x, ("gradient", "positive"), "{}", None)
    assert asked == [["positive"]]


def test_maps_are_keyed_by_image_settings_and_target(image):
    digest, x = image
    resources.maps(*KEY, digest, x, ("gradient",), "{}", 1)
    assert resources.missing_maps(*KEY, digest, ("gradient",), "{}", 1) == []
    assert resources.missing_maps(*KEY, digest, ("gradient",), "{}", 2) == ["gradient"]
    assert resources.missing_maps(*KEY, "another-digest", ("gradient",), "{}", 1) == ["gradient"]
    assert resources.missing_maps(*KEY, digest, ("gradient",), '{"gradient": {"reduce": "sum"}}', 1) == ["gradient"]


def test_a_run_cancelled_from_a_preview_stores_none_of_its_maps(image):
    """Maps are stored only once every map of the run is final: a cancel after one is final keeps nothing."""
    digest, x = image
    settings = json.dumps({"smoothgrad": {"samples": 64}, "gradient": {}})
    seen = []

    def cancel_after_a_final(explanation):
        seen.append(explanation)
        if explanation.progress == 1.0:
            raise engines.Cancelled

    with pytest.raises(engines.Cancelled):
        resources.maps(*KEY, digest, x, ("gradient", "smoothgrad"), settings, None, preview=cancel_after_a_final)
    assert seen and seen[-1].progress == 1.0
    assert resources.missing_maps(*KEY, digest, ("gradient", "smoothgrad"), settings, None) == ["gradient", "smoothgrad"]
