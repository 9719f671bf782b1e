"""Every registered method honours the same contract, whatever its maths."""

from __future__ import annotations

import pytest
import torch

import engines
from engines.models.catalogue import freeze
from helpers import Counting, snapshot

METHODS = engines.methods()


def fast_settings(name: str) -> dict:
    """Small but non-trivial settings, so the contract runs quickly on every method."""
    info = engines.method_info(name)
    small = {
        "samples": 3, "steps": 4, "rivals": 3, "patch": 4, "points": 5, "queries": 64, "chains": 8,
        "iterations": 10, "window": 4, "stride": 2, "channels": 3, "n_segments": 4,
    }
    return {p.name: small[p.name] for p in info.params if p.name in small}


@pytest.mark.parametrize("name", METHODS)
def test_shapes_types_and_finite_values(name, smooth_model, small_images):
    result = engines.explain(smooth_model, small_images, name, **fast_settings(name))
    assert result.method == name
    assert result.map.shape == (3, 8, 8) and result.map.dtype == torch.float32 and result.map.device.type == "cpu"
    assert torch.isfinite(result.map).all()
    if result.attribution is not None:
        assert result.attribution.shape == (3, 3, 8, 8) and torch.isfinite(result.attribution).all()
    assert result.target.shape == (3,) and result.target.dtype == torch.long
    assert result.logits.shape == (3, 6)
    torch.testing.assert_close(result.target, result.logits.argmax(1))
    if not result.signed:
        assert (result.map >= 0).all()


@pytest.mark.parametrize("name", METHODS)
def test_deterministic_for_fixed_settings(name, smooth_model, small_images):
    a = engines.explain(smooth_model, small_images, name, **fast_settings(name))
    b = engines.explain(smooth_model, small_images, name, **fast_settings(name))
    # Equal to float32 rounding: CPU convolutions round differently with batch size, and the
    # chunk size is tuned by timing, so bit-for-bit equality is not promised. Maps made of
    # differences of logits (occlusion) near zero carry the logits' rounding: atol 1e-6.
    torch.testing.assert_close(a.map, b.map, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_batched_equals_unbatched(name, smooth_model, small_images):
    batched = engines.explain(smooth_model, small_images, name, **fast_settings(name))
    for i in range(len(small_images)):
        alone = engines.explain(smooth_model, small_images[i : i + 1], name, **fast_settings(name))
        torch.testing.assert_close(alone.map[0], batched.map[i], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_model_is_left_untouched(name, smooth_model, small_images):
    before = snapshot(smooth_model)
    engines.explain(smooth_model, small_images, name, target=2, **fast_settings(name))
    after = snapshot(smooth_model)
    for key in ("requires_grad", "grads", "training", "hooks"):
        assert before[key] == after[key], key
    for group in ("params", "buffers"):
        for k, v in before[group].items():
            assert torch.equal(v, after[group][k]), k


@pytest.mark.parametrize("name", METHODS)
def test_registry_record_is_complete(name):
    info = engines.method_info(name)
    assert info.family in engines.method_families() and info.label and info.summary and info.reference
    settings = info.settings()
    assert set(settings) == {p.name for p in info.params}
    cost = info.cost(settings, 10)
    assert cost.forward >= 1 and cost.backward >= 0
    for p in info.params:
        assert p.check(p.default) == p.default and p.help


def test_an_explicit_target_is_used(smooth_model, small_images):
    result = engines.explain(smooth_model, small_images, "gradient", target=4)
    assert result.target.tolist() == [4, 4, 4]


@pytest.mark.parametrize(
    "settings, words",
    [
        ({"samples": 0}, "samples"),
        ({"noise": -0.1}, "noise"),
        ({"samples": 2.5}, "samples"),
        ({"reduce": "median"}, "reduce"),
        ({"epsilon": 1.0}, "no setting epsilon"),
    ],
)
def test_bad_settings_name_the_parameter_and_its_range(settings, words, smooth_model, small_images):
    with pytest.raises(ValueError, match=words):
        engines.explain(smooth_model, small_images, "smoothgrad", **settings)


@pytest.mark.parametrize("target", [6, -1, torch.tensor([0, 1]), 1.5])
def test_bad_targets_are_refused(target, smooth_model, small_images):
    with pytest.raises(ValueError, match="target"):
        engines.explain(smooth_model, small_images, "gradient", target=target)


@pytest.mark.parametrize(
    "images, words",
    [
        (torch.rand(3, 8, 8), "shape"),
        (torch.rand(1, 3, 8, 8) * 255, "pixel units"),
        (torch.full((1, 3, 8, 8), float("nan")), "NaN"),
        (torch.rand(0, 3, 8, 8), "at least one"),
    ],
)
def test_bad_images_are_refused(images, words, smooth_model):
    with pytest.raises(ValueError, match=words):
        engines.explain(smooth_model, images, "gradient")


def test_unknown_method_lists_the_known_ones(smooth_model, small_images):
    with pytest.raises(ValueError, match="integrated_gradients"):
        engines.explain(smooth_model, small_images, "gradcam")


def test_settings_are_checked_before_any_pass(smooth_model, small_images, monkeypatch):
    from engines.core import passes

    monkeypatch.setattr(passes, "forward_with_graph", lambda *a: pytest.fail("a pass ran"))
    with pytest.raises(ValueError):
        engines.explain_many(smooth_model, small_images, ["gradient", "smoothgrad"], params={"smoothgrad": {"samples": -1}})


@pytest.mark.parametrize("name", METHODS)
def test_the_clean_graph_is_kept_only_for_methods_that_share_the_gradient(name, smooth_model, small_images, monkeypatch):
    """A method that does not declare `shares_gradient` must never ask for the clean gradient
    (its clean pass has no graph); one that declares it must give the same map either way."""
    from engines.core.explain import Context

    info = engines.method_info(name)
    asked = []
    original = Context.gradient
    monkeypatch.setattr(Context, "gradient", lambda self: asked.append(self.graph) or original(self))
    result = engines.explain(smooth_model, small_images, name, **fast_settings(name))
    assert bool(asked) == info.shares_gradient
    assert all(asked)  # whoever asks was given a context that kept its graph
    if info.shares_gradient:
        ctx = Context(smooth_model, small_images, graph=False)
        _, saliency, _ = info.compute(ctx, **info.settings(fast_settings(name)))
        torch.testing.assert_close(saliency, result.map, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", METHODS)
def test_the_record_counts_every_pass_the_method_makes(name):
    """The cost in the record (clean pass included) is what one image really costs; gradient flow's
    is its longest path, so an early stop costs less, never more."""
    model = freeze(Counting())
    x = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    settings = fast_settings(name)
    engines.explain(model, x, name, target=2, **settings)
    cost = engines.method_info(name).cost(settings, 5, (8, 8))
    done = (sum(model.forward_items), sum(model.backward_items))
    if name == "gradient_flow":
        assert done[0] <= cost.forward and done[1] <= cost.backward
    else:
        assert done == (cost.forward, cost.backward)
