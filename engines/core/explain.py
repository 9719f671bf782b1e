"""`explain` and `explain_many`: run registered methods on a batch of images.

A `Context` holds what the methods of one call share (the inputs, the target classes, one
forward pass with its graph, the target's gradient, the rival classes' gradient bounds), so
`explain_many` pays for each pass once however many methods use it.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
from torch import nn

from engines.core import passes
from engines.core.registry import method_info

Target = Union[None, int, torch.Tensor]


@dataclass
class Explanation:
    """One method's result for a batch.

    `map` is `(N, H, W)` float32 on the CPU, raw (not scaled for display); `attribution` is the
    per-channel `(N, C, H, W)` or None; `target` `(N,)` long; `logits` `(N, K)` of the clean
    input; `signed` says whether the map's values carry a sign; `settings` are the full settings
    used; `seconds` the wall time of this method (shared passes are charged to the first user).
    """

    method: str
    map: torch.Tensor
    attribution: Optional[torch.Tensor]
    target: torch.Tensor
    logits: torch.Tensor
    signed: bool
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


def as_module(model: Any) -> nn.Module:
    """The `nn.Module` inside a `LoadedModel`, or the module itself."""
    module = getattr(model, "model", model)
    if not isinstance(module, nn.Module):
        raise TypeError(f"expected a LoadedModel or torch.nn.Module, got {type(model).__name__}")
    return module


def check_images(x: Any) -> torch.Tensor:
    """`x` as float32 `(N, C, H, W)` in pixel units; ValueError saying what is wrong otherwise."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"images must be a torch.Tensor of shape (N, C, H, W); got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"images must have shape (N, C, H, W); got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("images must hold at least one image; got N = 0")
    x = x.detach().float()
    if not torch.isfinite(x).all():
        raise ValueError("images contain NaN or infinite values")
    low, high = x.min().item(), x.max().item()
    if low < -1e-4 or high > 1 + 1e-4:
        raise ValueError(
            f"images must be in pixel units [0, 1] (models normalise inside); got values in [{low:.3g}, {high:.3g}]"
        )
    return x.clamp(0, 1)


class Context:
    """What the methods of one call share; every quantity is computed once, when first asked for."""

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        target: Target = None,
        progress: passes.Progress = None,
        *,
        graph: bool = True,
    ):
        """`graph` says the clean pass should keep its graph because a method will ask for the
        gradient; without it the clean logits come from a cheaper pass with no graph (asking for
        the gradient later still works, at the price of a second forward pass)."""
        self.model = model
        self.graph = graph
        self.device = passes.model_device(model)
        self.x = check_images(x).to(self.device)
        self.progress = progress
        self._target_arg = target
        self._graph: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._logits: Optional[torch.Tensor] = None
        self._target: Optional[torch.Tensor] = None
        self._gradient: Optional[torch.Tensor] = None
        self._bounds: dict[Optional[int], tuple[torch.Tensor, torch.Tensor]] = {}

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._graph is None:
            x_leaf, logits = passes.forward_with_graph(self.model, self.x)
            _check_logits(logits, len(self.x))
            self._graph = (x_leaf, logits)
        return self._graph

    @property
    def logits(self) -> torch.Tensor:
        """Logits of the clean inputs, `(N, K)`."""
        if self._logits is None:
            if self.graph or self._graph is not None:
                self._logits = self._forward()[1].detach()
            else:
                self._logits = passes.forward(self.model, self.x)
                _check_logits(self._logits, len(self.x))
        return self._logits

    def use_logits(self, logits: torch.Tensor) -> None:
        """Clean logits `(N, K)` that a method's own pass produced (CAM maps run the clean image
        through a hooked pass): kept when none are known yet, so the clean pass is not run twice."""
        if self._logits is None:
            _check_logits(logits, len(self.x))
            self._logits = logits.detach()

    @property
    def num_classes(self) -> int:
        return self.logits.shape[1]

    @property
    def target(self) -> torch.Tensor:
        """The target class of each image, `(N,)` long: the argmax unless one was given."""
        if self._target is None:
            self._target = resolve_target(self._target_arg, self.logits)
        return self._target

    def one_hot(self, classes: torch.Tensor) -> torch.Tensor:
        """`(N, K)` cotangent picking `classes[n]`'s logit for image n."""
        return torch.nn.functional.one_hot(classes.to(self.device), self.num_classes).float()

    def gradient(self) -> torch.Tensor:
        """`g = ∂s_c/∂x` for the target logit of each image, `(N, C, H, W)`."""
        if self._gradient is None:
            x_leaf, logits = self._forward()
            self._gradient = passes.backward(x_leaf, logits, self.one_hot(self.target)).detach()
        return self._gradient

    def rivals(self, count: Optional[int]) -> torch.Tensor:
        """The rival classes of each image, `(N, M)`: every class but the target (count None or
        ≥ K − 1), else the `count` classes with the highest logits other than the target."""
        logits = self.logits.clone()
        logits[torch.arange(len(logits)), self.target] = -torch.inf
        m = self.num_classes - 1 if count is None else min(count, self.num_classes - 1)
        return logits.topk(m, dim=1).indices  # (N, M), highest logits first

    def rival_bounds(self, count: Optional[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """`(max_k g_k, min_k g_k)` over each image's rival classes k, each `(N, C, H, W)`.

        One forward pass is shared; the M rival gradients are vector–Jacobian products taken in
        measured chunks and reduced as they come, so memory stays O(N·C·H·W).
        """
        key = None if count is None or count >= self.num_classes - 1 else count
        if key not in self._bounds:
            rivals = self.rivals(key)
            upper = torch.full_like(self.x, -torch.inf)
            lower = torch.full_like(self.x, torch.inf)
            if rivals.shape[1]:
                cotangents = torch.nn.functional.one_hot(rivals.T, self.num_classes).float()  # (M, N, K)

                def consume(start: int, grads: torch.Tensor) -> None:  # grads (m, N, C, H, W)
                    torch.maximum(upper, grads.amax(0), out=upper)
                    torch.minimum(lower, grads.amin(0), out=lower)

                x_leaf, logits = self._forward()
                passes.backward_many(self.model, x_leaf, logits, cotangents, consume, progress=self.progress)
            self._bounds[key] = (upper, lower)
        return self._bounds[key]

    def close(self) -> None:
        """Drops the retained graph and cached gradients."""
        self._graph = None
        self._gradient = None
        self._bounds.clear()


def _check_logits(logits: torch.Tensor, n: int) -> None:
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ValueError(f"the model must return logits of shape (N, K); it returned {tuple(logits.shape)}")
    finite = torch.isfinite(logits.detach()).all(dim=1)
    if not finite.all():
        bad = (~finite).nonzero().flatten().tolist()
        raise ValueError(
            f"the model returned NaN or infinite logits for image(s) {bad[:10]} of {n}; no map or "
            "probability can be computed from them. Check the model on this image."
        )


def resolve_target(target: Target, logits: torch.Tensor) -> torch.Tensor:
    """Target classes `(N,)` long on the logits' device: the argmax for None, an int for every
    image, or one int per image. ValueError for classes outside [0, K)."""
    n, k = logits.shape
    if target is None:
        return logits.argmax(dim=1)
    if isinstance(target, bool) or not isinstance(target, (numbers.Integral, torch.Tensor, list, tuple)) and not (
        hasattr(target, "dtype") and hasattr(target, "shape")  # a numpy array of class indices
    ):
        hint = " (a class name? give its index in the model's categories)" if isinstance(target, str) else ""
        hint = f" (a float; give int({target:g}))" if isinstance(target, float) and float(target).is_integer() else hint
        raise ValueError(
            f"target must be a class index (an int) in [0, {k - 1}], {n} of them, or None; "
            f"got {target!r}{hint or f' (a {type(target).__name__})'}"
        )
    if isinstance(target, numbers.Integral):
        if not 0 <= int(target) < k:
            raise ValueError(f"target must be a class index in [0, {k - 1}]; got {int(target)}")
        chosen = torch.full((n,), int(target), dtype=torch.long, device=logits.device)
    else:
        try:
            chosen = torch.as_tensor(target, device=logits.device)
        except (TypeError, ValueError, RuntimeError, OverflowError):
            raise ValueError(f"target must be None, an int, or {n} ints; got {target!r}") from None
        if chosen.dtype == torch.bool:
            raise ValueError(f"target must be class indices, not booleans; got {target!r}")
        if chosen.is_floating_point() or chosen.reshape(-1).shape[0] not in (1, n):
            raise ValueError(f"target must be None, an int, or {n} ints; got {tuple(chosen.shape)}")
        chosen = chosen.reshape(-1).long().expand(n).clone()
    if (chosen < 0).any() or (chosen >= k).any():
        raise ValueError(f"target must be a class index in [0, {k - 1}]; got {chosen.tolist()}")
    return chosen


def explain_many(
    model: Any,
    x: torch.Tensor,
    methods: list[str],
    target: Target = None,
    params: Optional[dict[str, dict]] = None,
    *,
    progress: passes.Progress = None,
) -> dict[str, Explanation]:
    """Runs several methods on the same images and target, sharing their passes.

    `params` maps a method name to its settings (missing settings take their defaults). All
    settings are checked before any pass runs. `progress(done, total)` is called per method.
    """
    module = as_module(model)
    params = params or {}
    unknown = sorted(set(params) - set(methods))
    if unknown:
        raise ValueError(f"settings given for methods not asked for: {', '.join(unknown)}")
    plan = [(method_info(name), method_info(name).settings(params.get(name))) for name in methods]
    ctx = Context(module, x, target, progress, graph=any(info.shares_gradient for info, _ in plan))
    results: dict[str, Explanation] = {}
    try:
        for info, settings in plan:
            began = time.perf_counter()
            attribution, saliency, signed = info.compute(ctx, **settings)
            results[info.name] = Explanation(
                method=info.name,
                map=saliency.detach().float().cpu(),
                attribution=None if attribution is None else attribution.detach().float().cpu(),
                target=ctx.target.cpu(),
                logits=ctx.logits.float().cpu(),
                signed=signed,
                settings=settings,
                seconds=time.perf_counter() - began,
            )
    finally:
        ctx.close()
    return results


def explain(
    model: Any,
    x: torch.Tensor,
    method: str,
    target: Target = None,
    *,
    progress: passes.Progress = None,
    **params: Any,
) -> Explanation:
    """One method's `Explanation` for images `x` `(N, C, H, W)` in pixel units.

    `target` is None (the predicted class), an int, or N ints; `params` are the method's settings.
    """
    return explain_many(model, x, [method], target, {method: params}, progress=progress)[method]


@dataclass
class Prediction:
    """A model's output for a batch: `logits` and softmax `probabilities`, both `(N, K)` on the CPU."""

    logits: torch.Tensor
    probabilities: torch.Tensor

    def top(self, k: int = 5, image: int = 0) -> list[tuple[int, float]]:
        """The `k` most probable classes of one image, as `(class index, probability)`, best first."""
        values, indices = self.probabilities[image].topk(min(k, self.probabilities.shape[1]))
        return [(int(i), float(v)) for v, i in zip(values, indices)]


def predict(model: Any, x: torch.Tensor) -> Prediction:
    """The model's logits and class probabilities for images `(N, C, H, W)` in pixel units."""
    images = check_images(x)
    logits = passes.forward(as_module(model), images).float().cpu()
    _check_logits(logits, len(images))
    return Prediction(logits, logits.softmax(dim=1))
