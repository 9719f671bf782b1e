"""The CAM family against its outside oracles (pytorch-grad-cam, Captum), and its layer handling."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

import engines
from engines.core import passes
from engines.families import cam
from engines.models.catalogue import Normalised, freeze
from helpers import snapshot

pytest.importorskip("pytorch_grad_cam")

SCALE = 1e5
"""Logits scaled for the Grad-CAM++ comparisons (unscaled, pytorch-grad-cam's ε moves the map by 2 %)."""
KINDS = {"grad_cam": "GradCAM", "grad_cam_pp": "GradCAMPlusPlus", "layer_cam": "LayerCAM", "score_cam": "ScoreCAM"}


@pytest.fixture(scope="module")
def shapes():
    return engines.load_model("shapes_cnn", device="cpu")


@pytest.fixture(scope="module")
def shapes_images(shapes):
    samples = engines.sample_images()
    return torch.cat([shapes.preprocess(engines.read_image(samples[n])) for n in ("shapes_star", "shapes_ring")])


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Each map scaled to [0, 1]: pytorch-grad-cam's normalisation, which commutes with the
    bilinear upsampling up to an affine map, so min-max at full size makes both comparable."""
    flat = maps.flatten(1)
    low, high = flat.min(1).values, flat.max(1).values
    return ((flat - low[:, None]) / (high - low)[:, None]).reshape(maps.shape)


def library_map(name, model, x, target, settings, monkeypatch=None, knob=None):
    peer = next(p for p in engines.method_info(name).peers if p.library == "pytorch_grad_cam")
    full = engines.method_info(name).settings(settings)
    if name == "score_cam" and monkeypatch is not None:
        # pytorch-grad-cam upsamples Score-CAM's masks with corners aligned; ours (and the
        # paper's released code) with pixel centres aligned. Same upsampling for both here.
        class Centred(nn.Upsample):
            def __init__(self, size):
                super().__init__(size=size, mode="bilinear", align_corners=False)

        monkeypatch.setattr(torch.nn, "UpsamplingBilinear2d", Centred)
    return peer.to_map(peer.build(model, x, target, full, knob)(), full)


def assert_same_map(ours, theirs, rtol=1e-4):
    scale = theirs.abs().max()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=rtol * float(scale))


@pytest.mark.parametrize("name", ["grad_cam", "layer_cam", "grad_cam_pp", "score_cam"])
def test_each_map_equals_pytorch_grad_cam_on_the_shapes_cnn(name, shapes, shapes_images, monkeypatch):
    """On the shapes CNN's default layer (every one of its 128 channels for Score-CAM), each map is
    pytorch-grad-cam's, after the same min-max normalisation."""
    target = torch.tensor([3, 7])
    model = shapes.model
    if name == "grad_cam_pp":
        # pytorch-grad-cam adds 1e-6 to α's denominator, the size of G² here; logits scaled by
        # 1e5 make that negligible, for both libraries alike (the same model).
        model = freeze(Scaled(shapes.model, SCALE))
    ours = engines.explain(model, shapes_images, name, target=target).map
    theirs = library_map(name, model, shapes_images, target, {}, monkeypatch)
    assert_same_map(minmax(ours), theirs)


@pytest.mark.parametrize("name, layer", [("grad_cam", None), ("layer_cam", None), ("grad_cam_pp", None),
                                         ("score_cam", "net._blocks.0")])
def test_each_map_equals_pytorch_grad_cam_on_efficientnet(name, layer, efficientnet, chelsea, monkeypatch):
    """On EfficientNet-Lite0 (its head convolution; a 16-channel early block for Score-CAM, whose
    1280 head maps would take minutes), each map is pytorch-grad-cam's for the tabby class."""
    model = efficientnet.model if name != "grad_cam_pp" else freeze(Scaled(efficientnet.model, SCALE))
    settings = {"layer": layer} if layer else {}
    ours = engines.explain(model, chelsea, name, target=281, **settings).map
    theirs = library_map(name, model, chelsea, 281, settings, monkeypatch)
    assert_same_map(minmax(ours), theirs)


def test_score_cam_keeps_the_same_top_channels_as_pytorch_grad_cam_given_them(shapes, shapes_images, monkeypatch):
    """With fewer channels than the layer has, Score-CAM uses the maps of highest mean activation;
    pytorch-grad-cam restricted to the same maps (at its smallest batch, the benchmark's knob)
    computes the same map."""
    ours = engines.explain(shapes.model, shapes_images, "score_cam", target=2, channels=8).map
    theirs = library_map("score_cam", shapes.model, shapes_images, 2, {"channels": 8}, monkeypatch, knob=1)
    assert_same_map(minmax(ours), theirs)


@pytest.mark.parametrize("model_name", ["shapes_cnn", "efficientnet_lite0"])
def test_grad_cam_equals_captum_layer_grad_cam_at_raw_scale(model_name, shapes, shapes_images, efficientnet, chelsea):
    """Grad-CAM is Captum's LayerGradCam upsampled bilinearly, at its raw scale (no normalisation)."""
    loaded, x, target = (shapes, shapes_images, torch.tensor([1, 5])) if model_name == "shapes_cnn" else (
        efficientnet, chelsea, 281)
    pytest.importorskip("captum")
    peer = next(p for p in engines.method_info("grad_cam").peers if p.library == "captum")
    full = engines.method_info("grad_cam").settings({})
    theirs = peer.to_map(peer.build(loaded.model, x, target, full, None)(), full)
    ours = engines.explain(loaded, x, "grad_cam", target=target).map
    assert_same_map(ours, theirs)


class Scaled(nn.Module):
    """A model whose logits are `factor` times another's (its layers keep their names under `inner.`)."""

    def __init__(self, inner: nn.Module, factor: float):
        super().__init__()
        self.inner, self.factor = inner, factor
        self.cam_layer = "inner." + cam.default_layer(inner)

    def forward(self, x):
        return self.inner(x) * self.factor


def test_grad_cam_pp_weights_follow_the_closed_form_and_are_zero_where_it_is_zero_over_zero():
    """α = G² / (2G² + ΣA·G³) by hand on a 1×1 map, and a zero gradient gives a zero weight, not NaN."""
    a = torch.tensor([[[[2.0]], [[3.0]]]])  # (1, 2, 1, 1)
    g = torch.tensor([[[[0.5]], [[0.0]]]])
    alpha = 0.25 / (2 * 0.25 + 2.0 * 0.125)
    expected = alpha * 0.5 * 2.0
    torch.testing.assert_close(cam.grad_cam_pp_map(a, g), torch.tensor([[[expected]]]))


def test_score_cam_ignores_the_baseline_score_as_a_softmax_must(shapes, shapes_images):
    """Subtracting the baseline's score from every masked score leaves the softmax weights alone,
    so a baseline other than black changes the masked images, not that rule: white gives a valid map."""
    black = engines.explain(shapes, shapes_images, "score_cam", target=2, channels=16).map
    white = engines.explain(shapes, shapes_images, "score_cam", target=2, channels=16, baseline="white").map
    assert (black >= 0).all() and (white >= 0).all() and not torch.allclose(black, white)


def test_the_default_layer_is_the_records_and_any_listed_layer_can_be_chosen(shapes, shapes_images):
    """Every catalogue record names its CAM layer; the listed layers carry their output sizes and
    each gives a map of the image's size."""
    assert shapes.cam_layer == "net.features.5"
    layers = {layer.name: layer for layer in engines.conv_layers(shapes)}
    assert layers["net.features.5"].shape == (128, 8, 8)
    assert layers["net.features.0.0"].shape == (32, 32, 32) and "Conv2d" in layers["net.features.0.0"].describe()
    default = engines.explain(shapes, shapes_images, "grad_cam").map
    chosen = engines.explain(shapes, shapes_images, "grad_cam", layer="net.features.5").map
    torch.testing.assert_close(default, chosen)
    early = engines.explain(shapes, shapes_images, "layer_cam", layer="net.features.1").map
    assert early.shape == (2, 64, 64) and not torch.allclose(minmax(early), minmax(default))
    for spec in engines.catalogue().values():
        assert spec.cam_layer and spec.cam_layer.startswith("net.")


def test_a_bare_module_uses_its_last_convolution(smooth_model, small_images):
    """Without a record, the last Conv2d is the CAM layer."""
    assert cam.default_layer(smooth_model) == "body.3"
    torch.testing.assert_close(engines.explain(smooth_model, small_images, "grad_cam").map,
                               engines.explain(smooth_model, small_images, "grad_cam", layer="body.3").map)


@pytest.mark.parametrize("layer, words", [("net.nowhere", "no layer"), ("net.classifier", "not a feature map"),
                                          ("", "layer name")])
def test_bad_layers_say_what_is_wrong(layer, words, shapes, shapes_images):
    with pytest.raises(ValueError, match=words):
        engines.explain(shapes, shapes_images, "grad_cam", layer=layer)


def test_a_torchscript_model_is_refused_clearly_and_left_untouched(shapes, shapes_images):
    """A TorchScript model's layers cannot be hooked: LayerUnavailable says so, lists no layers,
    and leaves no hook behind."""
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(shapes.model.net), buffer)
    loaded = engines.load_torchscript(buffer.getvalue(), list(shapes.categories), input_size=64,
                                      mean=shapes.spec.mean, std=shapes.spec.std, device="cpu")
    before = snapshot(loaded.model)
    for name in KINDS:
        with pytest.raises(engines.LayerUnavailable, match="TorchScript"):
            engines.explain(loaded, shapes_images, name, **({"channels": 2} if name == "score_cam" else {}))
        with pytest.raises(engines.LayerUnavailable, match="TorchScript"):
            engines.explain(loaded, shapes_images, name, layer="net.features.5")
    with pytest.raises(engines.LayerUnavailable, match="TorchScript"):
        engines.conv_layers(loaded)
    assert snapshot(loaded.model)["hooks"] == before["hooks"]


def test_the_hook_is_removed_even_when_the_pass_fails(shapes):
    """A layer that fails inside the hooked pass leaves no hook on the shared model."""
    before = snapshot(shapes.model)["hooks"]
    with pytest.raises(engines.LayerUnavailable):
        passes.layer_gradient(shapes.model, torch.rand(1, 3, 64, 64), "net.classifier", torch.ones(1, 10))
    assert snapshot(shapes.model)["hooks"] == before


def test_an_in_place_relu_after_the_layer_does_not_change_its_recorded_activations():
    """The hooked layer's output, followed by ReLU(inplace=True), is recorded as it was."""
    net = freeze(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                               nn.Linear(4, 2)))
    x = torch.rand(1, 3, 6, 6)
    _, activations, _ = passes.layer_gradient(net, x, "0", torch.ones(1, 2))
    torch.testing.assert_close(activations, net[0](x))
    assert (activations < 0).any()


def test_grad_cam_on_a_linear_head_weights_each_map_by_its_class_weight():
    """With logits = W · mean_ij(A), G_k = W_ck / (h·w), so Grad-CAM is ReLU(Σ_k W_ck A_k) / (h·w)."""
    torch.manual_seed(0)
    net = freeze(nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3)))
    x = torch.rand(2, 3, 6, 6)
    low = (net[3].weight[1][None, :, None, None] * net[0](x)).sum(1).clamp_min(0) / 36
    ours = engines.explain(Normalised(net, (0.0,) * 3, (1.0,) * 3), x, "grad_cam", target=1, layer="net.0").map
    torch.testing.assert_close(ours, cam.upsample(low, (6, 6)), rtol=1e-5, atol=1e-7)
