"""`explain` and `explain_many`: run registered methods on a batch of images.

A `Context` holds what the methods of one call share (the inputs, the target classes, one
forward pass with its graph, the target's gradient, the rival classes' gradient bounds), so
`explain_many` pays for each pass once however many methods use it.

Previews: given `preview=fn`, a method that costs more than a few passes hands `fn` its current
estimate while it works (`Explanation.progress < 1`), built from work it does anyway and at
most `PREVIEW_SHARE` of its time, then its final map (`progress == 1`). `explain_many` with
previews runs its methods side by side, each in its own thread taking turns in the device's
lane chunk by chunk, so every map shows a first picture early instead of after the ones before
it; the callbacks still run in the calling thread.
"""

from __future__ import annotations

import contextvars
import numbers
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
from torch import nn

from engines.core import lane, passes
from engines.core.registry import MethodInfo, method_info

Target = Union[None, int, torch.Tensor]
Preview = Optional[Callable[["Explanation"], None]]
"""A callback `preview(explanation)`: intermediate maps (`progress < 1`), then the final one."""

PREVIEW_SECONDS = 0.2
"""At least this long between two previews of one method."""
PREVIEW_SHARE = 0.1
"""Previews (building the map and the callback) take at most this share of a method's time."""


@dataclass
class Explanation:
    """One method's result for a batch.

    `map` is `(N, H, W)` float32 on the CPU, raw (not scaled for display); `attribution` is the
    per-channel `(N, C, H, W)` or None; `target` `(N,)` long; `logits` `(N, K)` of the clean
    input; `signed` says whether the map's values carry a sign; `settings` are the full settings
    used; `seconds` the wall time of this method (shared passes are charged to the first user;
    with previews, from the call's start); `progress` the fraction of the work done: 1 for a
    final map, less for a preview handed to a `preview` callback.
    """

    method: str
    map: torch.Tensor
    attribution: Optional[torch.Tensor]
    target: torch.Tensor
    logits: torch.Tensor
    signed: bool
    settings: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    progress: float = 1.0


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
        self._progress = progress
        self._local = threading.local()  # each method thread's own progress and previews
        self._lock = threading.RLock()  # methods running side by side share the lazy passes
        self._bounds_lock = threading.Lock()
        self._target_arg = target
        self._graph: Optional[tuple[torch.Tensor, torch.Tensor]] = None
        self._logits: Optional[torch.Tensor] = None
        self._target: Optional[torch.Tensor] = None
        self._gradient: Optional[torch.Tensor] = None
        self._bounds: dict[Optional[int], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def progress(self) -> passes.Progress:
        """The progress callback of the method running in this thread."""
        return getattr(self._local, "progress", self._progress)

    @property
    def previewing(self) -> bool:
        """Whether the method running in this thread should offer previews."""
        return getattr(self._local, "previews", None) is not None

    def preview(self, make: Callable[[], torch.Tensor], done: int, total: int) -> None:
        """Offers an intermediate map: `make()` returns it `(N, H, W)` and is called only when a
        preview is due (`PREVIEW_SECONDS`, `PREVIEW_SHARE`); `done / total` is the progress."""
        previews = getattr(self._local, "previews", None)
        if previews is not None and done < total:
            previews.offer(make, done / max(total, 1))

    def _forward(self) -> tuple[torch.Tensor, torch.Tensor]:
        with self._lock:
            if self._graph is None:
                x_leaf, logits = passes.forward_with_graph(self.model, self.x)
                _check_logits(logits, len(self.x))
                self._graph = (x_leaf, logits)
            return self._graph

    @property
    def logits(self) -> torch.Tensor:
        """Logits of the clean inputs, `(N, K)`."""
        if self._logits is not None:  # computed already: no need to wait for a method holding the lock
            return self._logits
        with self._lock:
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
        if self._target is not None:
            return self._target
        with self._lock:
            if self._target is None:
                self._target = resolve_target(self._target_arg, self.logits)
            return self._target

    def one_hot(self, classes: torch.Tensor) -> torch.Tensor:
        """`(N, K)` cotangent picking `classes[n]`'s logit for image n."""
        return torch.nn.functional.one_hot(classes.to(self.device), self.num_classes).float()

    def gradient(self) -> torch.Tensor:
        """`g = ∂s_c/∂x` for the target logit of each image, `(N, C, H, W)`."""
        if self._gradient is not None:
            return self._gradient
        with self._lock:
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

    def rival_bounds(
        self, count: Optional[int], partial: Optional[Callable[[tuple, int, int], None]] = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(max_k g_k, min_k g_k)` over each image's rival classes k, each `(N, C, H, W)`.

        One forward pass is shared; the M rival gradients are vector–Jacobian products taken in
        measured chunks and reduced as they come, so memory stays O(N·C·H·W). `partial((upper,
        lower), done, M)` is called after each chunk with the bounds over the first `done`
        rivals (highest logits first), for previews.
        """
        key = None if count is None or count >= self.num_classes - 1 else count
        self._forward()
        with self._bounds_lock:  # its own lock: the others need not wait for the rivals
            return self._rival_bounds(key, partial)

    def _rival_bounds(self, key: Optional[int], partial) -> tuple[torch.Tensor, torch.Tensor]:
        if key not in self._bounds:
            rivals = self.rivals(key)
            upper = torch.full_like(self.x, -torch.inf)
            lower = torch.full_like(self.x, torch.inf)
            if rivals.shape[1]:
                cotangents = torch.nn.functional.one_hot(rivals.T, self.num_classes).float()  # (M, N, K)

                def consume(start: int, grads: torch.Tensor) -> None:  # grads (m, N, C, H, W)
                    torch.maximum(upper, grads.amax(0), out=upper)
                    torch.minimum(lower, grads.amin(0), out=lower)

                progress = self.progress
                if partial is not None:
                    def progress(done: int, total: int, report=self.progress) -> None:
                        passes._report(report, done, total)
                        partial((upper, lower), done, total)

                x_leaf, logits = self._forward()
                passes.backward_many(self.model, x_leaf, logits, cotangents, consume, progress=progress)
            self._bounds[key] = (upper, lower)
        return self._bounds[key]

    def run(
        self, info: MethodInfo, settings: dict, began: float, progress: passes.Progress = None,
        emit: Optional[Callable[["Explanation"], None]] = None,
    ) -> "Explanation":
        """Runs one method in this thread with its own progress callback and previews (`emit`)."""
        self._local.progress = progress if progress is not None else self._progress
        self._local.previews = None if emit is None else _Previews(self, info, settings, began, emit)
        token = lane.set_eager(emit is not None)  # its chunks go first in its session until a first picture
        try:
            attribution, saliency, signed = info.compute(self, **settings)
        finally:
            lane.reset_eager(token)
            self._local.progress = self._local.previews = None
        return self.explanation(info, settings, saliency, attribution, signed, time.perf_counter() - began)

    def explanation(self, info: MethodInfo, settings: dict, saliency: torch.Tensor, attribution: Optional[torch.Tensor],
                    signed: bool, seconds: float, progress: float = 1.0) -> "Explanation":
        return Explanation(
            method=info.name,
            map=saliency.detach().float().cpu(),
            attribution=None if attribution is None else attribution.detach().float().cpu(),
            target=self.target.cpu(),
            logits=self.logits.float().cpu(),
            signed=signed,
            settings=settings,
            seconds=seconds,
            progress=progress,
        )

    def close(self) -> None:
        """Drops the retained graph and cached gradients."""
        self._graph = None
        self._gradient = None
        self._bounds.clear()


class _Budget:
    """The previews of every method of the process together: over the last `window` seconds,
    at most `PREVIEW_SHARE` of the time goes to them, however many methods and sessions run."""

    def __init__(self, window: float = 2.0):
        self.window = window
        self._spent: list[tuple[float, float]] = []  # (when, seconds)
        self._lock = threading.Lock()

    def allows(self, now: float) -> bool:
        with self._lock:
            self._spent = [(t, s) for t, s in self._spent if now - t < self.window]
            return sum(s for _, s in self._spent) < PREVIEW_SHARE * self.window

    def charge(self, now: float, seconds: float) -> None:
        with self._lock:
            self._spent.append((now, seconds))


_BUDGET = _Budget()


class _Previews:
    """When one method's next preview is due, and handing it on.

    A preview is due for the first offer, then once `PREVIEW_SECONDS` have passed since the last
    one and `1/PREVIEW_SHARE − 1` times the last one's cost (building the map plus the callback,
    which `explain_many` adds when the callback runs in another thread), so previews never take
    more than `PREVIEW_SHARE` of the method's time; later previews (not the first) also wait
    while the previews of all methods together have used their share (`_Budget`). The map is
    built holding the device's lane, so it never slows another session's chunk.
    """

    def __init__(self, ctx: Context, info: MethodInfo, settings: dict, began: float, emit: Callable):
        self.ctx, self.info, self.settings, self.began, self.emit = ctx, info, settings, began, emit
        self.last: Optional[float] = None
        self.cost = 0.0

    def offer(self, make: Callable[[], torch.Tensor], fraction: float) -> None:
        now = time.perf_counter()
        if self.last is not None and (now - self.last < max(PREVIEW_SECONDS, self.cost * (1 / PREVIEW_SHARE - 1))
                                      or not _BUDGET.allows(now)):
            return
        with lane.prompt(), lane.hold(self.ctx.device), torch.no_grad():  # before the session's next chunk
            saliency = make()
        lane.set_eager(False)  # a first picture is on screen: back to plain turns
        self.cost = 0.0
        self.emit(self.ctx.explanation(self.info, self.settings, saliency, None, self.info.signed,
                                       time.perf_counter() - self.began, progress=min(fraction, 0.999)), self)
        self.cost += time.perf_counter() - now
        self.last = time.perf_counter()
        _BUDGET.charge(self.last, self.cost)


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
    preview: Preview = None,
) -> dict[str, Explanation]:
    """Runs several methods on the same images and target, sharing their passes.

    `params` maps a method name to its settings (missing settings take their defaults). All
    settings are checked before any pass runs. Without `preview`, the methods run one after
    another and `progress(done, total)` is called per method, in its own items. With
    `preview(explanation)`, they run side by side (see the module's docstring): `preview` gets
    each method's intermediate maps and then its final one as soon as it is ready, and
    `progress(done, total)` follows the whole call in passes (each method's share weighted by
    its cost). Raising from either callback (e.g. `Cancelled`) stops every method; nothing is
    returned.
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
        if preview is None:
            for info, settings in plan:
                results[info.name] = ctx.run(info, settings, time.perf_counter())
        elif len(plan) == 1:
            info, settings = plan[0]
            results[info.name] = ctx.run(info, settings, time.perf_counter(), emit=lambda e, _: preview(e))
            preview(results[info.name])
        else:
            results = _side_by_side(ctx, plan, progress, preview)
    finally:
        ctx.close()
    return results


def _side_by_side(ctx: Context, plan: list[tuple[MethodInfo, dict]], progress: passes.Progress,
                  preview: Callable[[Explanation], None]) -> dict[str, Explanation]:
    """Runs each method of `plan` in its own thread, as streams of the caller's lane session;
    the callbacks run here, in the calling thread, fed from a queue."""
    began = time.perf_counter()
    ctx.target  # the clean pass, once, before the methods start  # noqa: B018
    if any(info.shares_gradient for info, _ in plan):
        ctx.gradient()
    size = tuple(ctx.x.shape[-2:])
    weights = {info.name: max(1, info.cost(settings, ctx.num_classes, size).passes) for info, settings in plan}
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    owner = lane.current_session()

    def work(info: MethodInfo, settings: dict) -> None:
        def report(done: int, total: int) -> None:
            if stop.is_set():
                raise passes.Cancelled()
            events.put(("progress", info.name, done / max(total, 1)))

        def emit(explanation: Explanation, previews: _Previews) -> None:
            events.put(("preview", explanation, previews))

        with lane.session(owner, info.name):
            try:
                events.put(("done", info.name, ctx.run(info, settings, began, report, emit)))
            except BaseException as error:  # handed to the calling thread, which re-raises it
                events.put(("error", info.name, error))

    threads = [threading.Thread(target=contextvars.copy_context().run, args=(work, info, settings), daemon=True,
                                name=f"explain:{info.name}") for info, settings in plan]
    for thread in threads:
        thread.start()
    done = {info.name: 0.0 for info, _ in plan}
    results: dict[str, Explanation] = {}
    failure: Optional[BaseException] = None
    pending = len(threads)
    while pending:
        kind, name_or_map, value = events.get()
        try:
            if kind in ("done", "error"):
                pending -= 1
            if kind == "error":
                failure = failure or value
                stop.set()
            elif stop.is_set():
                continue
            elif kind == "progress":
                done[name_or_map] = value
                if progress is not None:
                    progress(round(sum(weights[m] * f for m, f in done.items())), sum(weights.values()))
            elif kind == "preview":
                started = time.perf_counter()
                preview(name_or_map)
                value.cost += time.perf_counter() - started
                _BUDGET.charge(time.perf_counter(), time.perf_counter() - started)
            else:
                results[name_or_map] = value
                done[name_or_map] = 1.0
                preview(value)
        except BaseException as error:
            failure = failure or error
            stop.set()
    for thread in threads:
        thread.join()
    if failure is not None:
        raise failure
    return {info.name: results[info.name] for info, _ in plan}


def explain(
    model: Any,
    x: torch.Tensor,
    method: str,
    target: Target = None,
    *,
    progress: passes.Progress = None,
    preview: Preview = None,
    **params: Any,
) -> Explanation:
    """One method's `Explanation` for images `x` `(N, C, H, W)` in pixel units.

    `target` is None (the predicted class), an int, or N ints; `params` are the method's settings.
    `preview(explanation)` receives intermediate maps while the method works (`.map` the current
    estimate, `.progress` < 1) and then the final one; the final map is the same as without it.
    """
    return explain_many(model, x, [method], target, {method: params}, progress=progress, preview=preview)[method]


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
    """The model's logits and class probabilities for images `(N, C, H, W)` in pixel units.

    A short call: it goes ahead of the next chunk of any long map in the device's lane."""
    images = check_images(x)
    with lane.urgent():
        logits = passes.forward(as_module(model), images).float().cpu()
    _check_logits(logits, len(images))
    return Prediction(logits, logits.softmax(dim=1))
