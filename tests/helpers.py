"""Helpers shared by several test files (fixtures live in conftest.py)."""

from __future__ import annotations

import torch
from torch import nn


def snapshot(model: torch.nn.Module) -> dict:
    """Everything about a model that no engine may change: weights, buffers, flags, hooks."""
    return {
        "params": {k: v.detach().clone() for k, v in model.named_parameters()},
        "buffers": {k: v.detach().clone() for k, v in model.named_buffers()},
        "requires_grad": {k: v.requires_grad for k, v in model.named_parameters()},
        "grads": {k: v.grad for k, v in model.named_parameters()},
        "training": [m.training for m in model.modules()],
        "hooks": [len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules()],
    }


def count_forward_points(monkeypatch) -> list[int]:
    """Patches `passes.forward_points` to record the number of copies of each call."""
    from engines.core import passes

    calls: list[int] = []
    original = passes.forward_points

    def counting(model, points, count, shape, **kwargs):
        calls.append(count)
        return original(model, points, count, shape, **kwargs)

    monkeypatch.setattr(passes, "forward_points", counting)
    return calls


class Counting(nn.Module):
    """A small model that counts the images through its forward pass and its backward passes.

    The backward tap sits just after the convolution, so a backward pass that stops at that layer
    (a CAM map's) is counted as well as one that reaches the input.
    """

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.net = nn.Sequential(nn.Softplus(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
        self.forward_items: list[int] = []
        self.backward_items: list[int] = []

    def forward(self, x):
        self.forward_items.append(len(x))
        counter = self

        class Tap(torch.autograd.Function):
            @staticmethod
            def forward(ctx, t):
                return t.view_as(t)

            @staticmethod
            def backward(ctx, grad):
                counter.backward_items.append(len(grad))
                return grad

        return self.net(Tap.apply(self.conv(x)))


def on_shapes_star(page: str, timeout: int):
    """A Streamlit `AppTest` of `page`, run, then switched to the shapes CNN and its star sample
    (where every map takes milliseconds), with no exception on the way."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(page, default_timeout=timeout)
    at.run()
    at.selectbox(key="model").set_value("shapes_cnn")
    at.selectbox(key="sample").set_value("shapes_star").run()
    assert not at.exception, at.exception
    return at
