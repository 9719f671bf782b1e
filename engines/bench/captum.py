"""Captum as the benchmark's reference, for the methods it has.

Each reference runs Captum's implementation with our method's settings (same steps, samples,
windows, baseline and target), so the two compute the same numbers and only the speed differs.
Captum's batching knob (`internal_batch_size`, `nt_samples_batch_size`,
`perturbations_per_eval`) is the one thing left free: the benchmark times Captum at its default
and at the fastest of `candidates`. Captum is imported only when a reference is built: it is a
test and benchmark dependency (requirements-test.txt), not one of the dashboard's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from engines.core.fills import fill_image


@dataclass(frozen=True)
class Reference:
    """Captum's version of one method: `build(model, x, target, settings, knob)` returns a call.

    `knob` names Captum's batching argument (None when it has none); `default` is its value when
    left out; `candidates(settings)` the values worth trying for the fastest setting.
    """

    method: str
    label: str
    knob: Optional[str]
    default: Any
    candidates: Callable[[dict], list[int]]
    build: Callable[[nn.Module, torch.Tensor, int, dict, Any], Callable[[], torch.Tensor]]


def _powers(top: int, cap: int = 64) -> list[int]:
    """1, 2, 4, … up to `top` (and `cap`), plus `top` itself when it is smaller than `cap`."""
    sizes = [2**i for i in range(8) if 2**i <= min(top, cap)]
    return sizes + ([top] if top <= cap and top not in sizes else [])


def _saliency(model, x, target, settings, knob):
    from captum.attr import Saliency

    return lambda: Saliency(model).attribute(x, target=target, abs=False)


def _input_x_gradient(model, x, target, settings, knob):
    from captum.attr import InputXGradient

    return lambda: InputXGradient(model).attribute(x, target=target)


def _integrated_gradients(model, x, target, settings, knob):
    from captum.attr import IntegratedGradients

    baseline = fill_image(x, settings["baseline"])
    return lambda: IntegratedGradients(model).attribute(
        x, baselines=baseline, target=target, n_steps=settings["steps"], method=settings["rule"],
        internal_batch_size=knob,
    )


def _smoothgrad(model, x, target, settings, knob):
    from captum.attr import NoiseTunnel, Saliency

    sigma = settings["noise"] * float(x.max() - x.min())  # our σ: a fraction of the image's range
    return lambda: NoiseTunnel(Saliency(model)).attribute(
        x, nt_type="smoothgrad", nt_samples=settings["samples"], nt_samples_batch_size=knob, stdevs=sigma,
        target=target, abs=False,
    )


def _occlusion(model, x, target, settings, knob):
    from captum.attr import Occlusion

    window, stride = settings["window"], settings["stride"]
    baseline = fill_image(x, settings["fill"])
    return lambda: Occlusion(model).attribute(
        x, sliding_window_shapes=(x.shape[1], window, window), strides=(x.shape[1], stride, stride),
        baselines=baseline, target=target, perturbations_per_eval=knob,
    )


REFERENCES: dict[str, Reference] = {
    r.method: r
    for r in (
        Reference("gradient", "Saliency", None, None, lambda s: [], _saliency),
        Reference("gradient_x_input", "InputXGradient", None, None, lambda s: [], _input_x_gradient),
        Reference("integrated_gradients", "IntegratedGradients", "internal_batch_size", None,
                  lambda s: _powers(s["steps"]), _integrated_gradients),
        Reference("smoothgrad", "NoiseTunnel(Saliency)", "nt_samples_batch_size", None,
                  lambda s: _powers(s["samples"]), _smoothgrad),
        Reference("occlusion", "Occlusion", "perturbations_per_eval", 1, lambda s: _powers(256, cap=128), _occlusion),
    )
}
"""Captum's counterpart of each method it has, by our method's name."""


def captum_available() -> bool:
    try:
        import captum.attr  # noqa: F401
    except ImportError:
        return False
    return True


def comparable(method: str, settings: dict, size: tuple[int, int]) -> bool:
    """Whether Captum computes what our method computes with these settings on `(H, W)` images:
    its InputXGradient measures from black only; its Occlusion has no noise or darker/brighter
    fills, refuses strides longer than the window, and its last window stops short of the edge
    unless the strides fit exactly (ours always reaches the edge)."""
    if method not in REFERENCES:
        return False
    if method == "gradient_x_input":
        return settings["baseline"] == "black"
    if method == "occlusion":
        window, stride = settings["window"], settings["stride"]
        fits = stride <= window and all(side >= window and (side - window) % stride == 0 for side in size)
        return fits and settings["fill"] in ("black", "white", "grey", "mean", "blur")
    return True
