"""The only module that runs forward and backward passes.

Every method in `engines` asks this module for logits and input gradients; it never calls the
model itself. This module owns three concerns:

* **devices**: `pick_device` chooses CUDA, then MPS, then the CPU (or what was asked for);
* **batching and chunking**: many inputs (SmoothGrad samples, integrated-gradient steps, rival
  classes) go through the model in chunks whose size is *measured*, per model, device, input
  shape and kind of pass, and remembered (`ChunkTuner`). Bigger batches are not always faster
  on a CPU, so the tuner tries sizes on the real work and keeps the fastest per item;
* **never touching shared state**: gradients are taken with `torch.autograd.grad` with respect
  to the *input* only; no `.backward()`, no hooks, no mode or weight changes (the one
  exception, at the end: CAM maps' layer hooks, always removed in `finally`);
* **taking turns**: every chunk of passes runs while holding its device's lane
  (`engines.core.lane`), which serves short interactive calls first and sessions fairly, and
  asks for chunks of about `lane.CHUNK_SECONDS` while anyone waits. Progress callbacks run
  between chunks, outside the lane.
"""

from __future__ import annotations

import threading
import time
import weakref
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Optional

import torch
from torch import nn

from engines.core import lane

Progress = Optional[Callable[[int, int], None]]
"""A callback `progress(done, total)` in items; raising from it (e.g. `Cancelled`) stops the run."""


class Cancelled(Exception):
    """Raised (by a progress callback) to stop a long run; nothing partial is returned."""


class OutOfMemory(RuntimeError):
    """The device ran out of memory even one item at a time."""


# --------------------------------------------------------------------------- devices


def available_devices() -> list[str]:
    """The device kinds this machine can run on, best first (e.g. ``["cuda", "cpu"]``)."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    found.append("cpu")
    return found


def pick_device(preference: str = "auto") -> torch.device:
    """The device to run on: ``"auto"`` takes CUDA, then MPS, then the CPU.

    A named device that this machine lacks raises ValueError saying which ones it has.
    """
    have = available_devices()
    if preference in (None, "", "auto"):
        return torch.device(have[0])
    kind = str(preference).split(":")[0]
    if kind not in have:
        raise ValueError(f"device {preference!r} is not available here; this machine has: {', '.join(have)}")
    return torch.device(preference)


def model_device(model: nn.Module) -> torch.device:
    """Where the model's weights live (the CPU for a model without parameters)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


# --------------------------------------------------------------------------- chunk sizes


@dataclass
class _Trial:
    """What the tuner knows about one key: the best size so far, and whether it has settled."""

    best: int = 1
    best_rate: float = float("inf")
    next: int = 1
    settled: bool = False
    warmed: set = field(default_factory=set)
    worse: int = 0
    """Sizes in a row, since the best, that were more than 10 % slower per item than it."""
    timings: dict = field(default_factory=dict)
    """Size → seconds per item of its timed chunks so far (a size is judged on the fastest of
    `TIMINGS`, so one chunk slowed by another program does not end the trial)."""
    rate: float = 0.0
    """Seconds per item of the latest chunk (in the lane, so other sessions' work is not in it)."""


def _work_clock(device: torch.device) -> float:
    """What a trial times a chunk by: on a CPU, the process's CPU seconds (another program
    preempting our threads does not add to them, so sizes are compared on their own cost);
    on a GPU, wall time (after synchronising)."""
    return time.process_time() if device.type == "cpu" else time.perf_counter()


TIMINGS = 2
"""Timed chunks per size in a trial; the fastest counts."""
PATIENCE = 2
"""Sizes in a row slower than the best that end a trial."""


class ChunkTuner:
    """Chooses how many items go through the model at once, by measuring.

    For a new key (model, device, input shape, kind of pass) jobs try growing chunk sizes
    (1, 2, 4, ...) on their own real items, timing each full chunk; the first chunk of a new
    size only warms it up (a new shape's first pass allocates and plans, and is slow), the next
    ones are timed, `TIMINGS` chunks of each (on a CPU in CPU seconds, `_work_clock`), and the
    fastest of them counts (a chunk that another process slowed says little; the fastest is the
    size's own cost). The trial goes on
    across jobs until `PATIENCE` sizes in a row are each more than 10 % slower per item than the
    best (per-item cost is not convex: on a small CNN 8 items beat 16, and 32 beat 16 again), or the cap is
    reached, and then the best size is used for every later job with that key. Sizes are capped by a
    memory budget; running out of memory halves the size and settles on the smaller one.
    """

    def __init__(self, memory_budget_bytes: int = 1 << 30, activation_factor: int = 160):
        self.memory_budget_bytes = memory_budget_bytes
        self.activation_factor = activation_factor
        self._trials: "weakref.WeakKeyDictionary[nn.Module, dict[tuple, _Trial]]" = weakref.WeakKeyDictionary()

    def cap(self, item_shape: tuple[int, ...], device: torch.device) -> int:
        """The largest chunk allowed for items of this shape: activations are guessed as
        `activation_factor` × the input's size per item, within the memory budget."""
        budget = self.memory_budget_bytes
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            budget = max(budget, free // 2)
        per_item = 4 * self.activation_factor * max(1, int(torch.Size(item_shape).numel()))
        return int(max(1, min(256, budget // per_item)))

    def chosen(self, model: nn.Module, key: tuple) -> Optional[int]:
        """The settled chunk size for this key, or None while still measuring."""
        trial = self._trials.get(model, {}).get(key)
        return trial.best if trial is not None and trial.settled else None

    def forget(self, model: nn.Module) -> None:
        self._trials.pop(model, None)

    def measuring(self, model: nn.Module) -> int:
        """How many of this model's keys are still being measured (0: every size is settled)."""
        return sum(not trial.settled for trial in self._trials.get(model, {}).values())

    def run(
        self,
        model: nn.Module,
        key: tuple,
        total: int,
        cap: int,
        work: Callable[[int, int], None],
        progress: Progress = None,
    ) -> None:
        """Calls `work(start, stop)` over `range(total)` in chunks, choosing their sizes.

        `work` must process items `start:stop` and accept any split. Each chunk runs holding the
        model's device's lane and is timed inside it, so the time measured is this chunk's alone
        however many sessions wait; while any wait, the chunk is cut to about
        `lane.CHUNK_SECONDS`, and the chunks of a map that has shown no preview yet are cut to
        `lane.EAGER_SECONDS` whether or not anyone waits (such a cut chunk teaches the tuner
        nothing). `progress(stop,
        total)` is called after each chunk, outside the lane.
        """
        trial = self._trials.setdefault(model, {}).setdefault(key, _Trial())
        device = model_device(model)
        start = 0
        while start < total:
            with lane.hold(device):
                planned = max(1, min(cap, trial.best if trial.settled else trial.next))
                size = planned
                if lane.is_eager():  # a map with no picture yet: a short first chunk, whoever waits
                    seconds = lane.EAGER_SECONDS
                else:
                    seconds = lane.CHUNK_SECONDS if lane.lane_for(device).contended() else None
                if seconds is not None and trial.rate > 0:
                    size = max(1, min(planned, int(seconds / trial.rate)))
                stop = min(total, start + size)
                began, began_work = time.perf_counter(), _work_clock(device)
                try:
                    work(start, stop)
                    if not trial.settled and device.type == "cuda":
                        torch.cuda.synchronize(device)  # a trial times the device's work, not its queueing
                except RuntimeError as error:
                    if not _is_oom(error):
                        raise
                    if size == 1:
                        raise OutOfMemory(
                            "the device ran out of memory even for one item: use a smaller image, "
                            "fewer classes or the CPU"
                        ) from error
                    _empty_cache()
                    trial.best, trial.settled = size // 2, True
                    continue
                elapsed, work_seconds = time.perf_counter() - began, _work_clock(device) - began_work
            trial.rate = elapsed / (stop - start)
            if not trial.settled and size == planned and stop - start == size:
                if size in trial.warmed:
                    timed = trial.timings.setdefault(size, [])
                    timed.append(work_seconds / size)
                    if len(timed) >= TIMINGS:
                        self._learn(trial, size, min(timed), cap)
                else:
                    trial.warmed.add(size)
            start = stop
            _report(progress, stop, total)

    @staticmethod
    def _learn(trial: _Trial, size: int, rate: float, cap: int) -> None:
        if rate < trial.best_rate:
            trial.best, trial.best_rate, trial.worse = size, rate, 0
        elif rate > 1.1 * trial.best_rate:
            trial.worse += 1
            if trial.worse >= PATIENCE:
                trial.settled = True
                return
        trial.next = size * 2
        trial.settled = trial.next > cap


def _empty_cache() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


TUNER = ChunkTuner()


def _key(model: nn.Module, kind: str, item_shape: tuple[int, ...]) -> tuple:
    return (kind, str(model_device(model)), tuple(item_shape))


def laid_out(batch: torch.Tensor) -> torch.Tensor:
    """A batch of images `(B, C, H, W)` in channels-last memory order (the same values).

    oneDNN's CPU convolutions run faster on it (EfficientNet-Lite0 at 224², one forward and
    backward pass: 44 ms against 51 ms in NCHW order here), and perturbed copies built by
    broadcasting come out in NCHW order, so every pass goes through this. Other shapes pass as
    they are.
    """
    return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch


def _report(progress: Progress, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


# --------------------------------------------------------------------------- passes


def forward(model: nn.Module, x: torch.Tensor, *, progress: Progress = None) -> torch.Tensor:
    """Logits `(B, K)` for inputs `(B, C, H, W)`, without gradients, in measured chunks."""
    device = model_device(model)
    chunks: dict[int, torch.Tensor] = {}

    def work(start: int, stop: int) -> None:
        with torch.no_grad():
            chunks[start] = model(laid_out(x[start:stop].to(device)))

    item = tuple(x.shape[1:])
    TUNER.run(model, _key(model, "forward", item), len(x), TUNER.cap(item, device) * 4, work, progress)
    return torch.cat([chunks[k] for k in sorted(chunks)])


def forward_with_graph(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass that keeps its graph: returns `(x_leaf, logits)` for later backward passes.

    Only the input requires a gradient: a model whose weights are frozen (as every catalogue
    model is) builds no weight-gradient work at all.
    """
    device = model_device(model)
    x_leaf = laid_out(x.detach().to(device)).requires_grad_(True)
    with lane.hold(device), torch.enable_grad():
        logits = model(x_leaf)
    return x_leaf, logits


def backward(x_leaf: torch.Tensor, logits: torch.Tensor, cotangent: torch.Tensor, *, keep: bool = True) -> torch.Tensor:
    """The vector–Jacobian product `Σ_k cotangent[b, k] ∂logits[b, k]/∂x[b]`, shape `(B, C, H, W)`.

    `keep` retains the graph for further backward passes over the same forward.
    """
    with lane.hold(x_leaf.device):
        (grad,) = torch.autograd.grad(logits, x_leaf, grad_outputs=cotangent.to(logits), retain_graph=keep)
    return grad


def backward_many(
    model: nn.Module,
    x_leaf: torch.Tensor,
    logits: torch.Tensor,
    cotangents: torch.Tensor,
    consume: Callable[[int, torch.Tensor], None],
    *,
    progress: Progress = None,
) -> None:
    """Many vector–Jacobian products over one forward pass, handed on chunk by chunk.

    `cotangents` is `(M, B, K)`; calls `consume(start, grads)` with `grads` of shape
    `(m, B, C, H, W)` for rows `start:start+m`, in order, so the caller can reduce them without
    ever holding all M. A chunk of one is a plain backward pass; larger chunks use
    `is_grads_batched` (vmap), which pays off on GPUs; the tuner measures which is faster here.
    """
    total = len(cotangents)

    def work(start: int, stop: int) -> None:
        block = cotangents[start:stop].to(logits)  # (m, B, K)
        if stop - start == 1:
            grads = backward(x_leaf, logits, block[0])[None]
        else:
            (grads,) = torch.autograd.grad(logits, x_leaf, grad_outputs=block, retain_graph=True, is_grads_batched=True)
        consume(start, grads)  # (m, B, C, H, W)

    item = tuple(x_leaf.shape)
    cap = min(64, TUNER.cap(item, x_leaf.device))
    TUNER.run(model, _key(model, "backward_many", item), total, cap, work, progress)


def gradient_sum(
    model: nn.Module,
    points: Callable[[int, int], torch.Tensor],
    count: int,
    shape: tuple[int, ...],
    target: torch.Tensor,
    weights: torch.Tensor,
    *,
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    progress: Progress = None,
    partial: Optional[Callable[[int, torch.Tensor], None]] = None,
) -> torch.Tensor:
    """`Σ_k weights[k] · T(∂s_target(p_k)/∂p_k)` over `count` points per image, shape `(N, C, H, W)`.

    `transform` T is applied element-wise to each point's gradient before it is weighted and
    summed (None: the identity; SmoothGrad's variants use `abs` and the square).

    `points(start, stop)` returns the points `start:stop` for every image, shape
    `(stop − start, N, C, H, W)`, and `shape` is `(N, C, H, W)`. SmoothGrad (noisy copies, equal weights) and integrated
    gradients (points on a path, quadrature weights) are both this sum. Points go through the
    model in measured chunks; nothing of size `count` is ever held. `partial(done, running)`
    is called after each chunk (outside the lane) with the float64 sum over the first `done`
    points, for previews; it must not change it.
    """
    device = model_device(model)
    target = target.to(device)
    weights = weights.to(device)
    total = torch.zeros(shape, dtype=torch.float64, device=device)

    def work(start: int, stop: int) -> None:
        block = points(start, stop).to(device)  # (m, N, C, H, W)
        m, n = block.shape[:2]
        x_leaf, logits = forward_with_graph(model, block.reshape(m * n, *block.shape[2:]))  # (m·N, K)
        cotangent = torch.zeros_like(logits)
        rows = torch.arange(m * n, device=device)
        if transform is None:  # the weights ride in the cotangent: one backward pass gives Σ w_k g_k
            cotangent[rows, target.repeat(m)] = weights[start:stop].repeat_interleave(n).to(logits)
            grads = backward(x_leaf, logits, cotangent, keep=False).reshape(m, n, *block.shape[2:])
        else:  # T(g_k) first, then the weights
            cotangent[rows, target.repeat(m)] = 1
            grads = transform(backward(x_leaf, logits, cotangent, keep=False).reshape(m, n, *block.shape[2:]))
            grads = grads * weights[start:stop].to(grads).reshape(m, 1, 1, 1, 1)
        total.add_(grads.sum(0, dtype=torch.float64))  # (N, C, H, W); float64 so chunking cannot change it

    def after(done: int, _: int) -> None:
        _report(progress, done, count)
        if partial is not None:
            partial(done, total)

    item = tuple(shape)  # one chunk item is one point for every image
    TUNER.run(model, _key(model, "gradient_sum", item), count, TUNER.cap(item, device), work, after)
    return total.float()


def forward_points(
    model: nn.Module,
    points: Callable[[int, int], torch.Tensor],
    count: int,
    shape: tuple[int, ...],
    *,
    progress: Progress = None,
    partial: Optional[Callable[[int, torch.Tensor], None]] = None,
) -> torch.Tensor:
    """Logits of `count` perturbed copies of a batch, made on demand, shape `(count, N, K)`.

    `points(start, stop)` returns copies `start:stop` of every image, `(m, N, C, H, W)`, and
    `shape` is `(N, C, H, W)`. Occlusion windows, finite differences, masks and curves are all
    this: many perturbed inputs, one batched forward pass per measured chunk, no gradients.
    `partial(done, logits)` is called after each chunk (outside the lane) with the logits of
    the first `done` copies, `(done, N, K)`, for previews.
    """
    device = model_device(model)
    chunks: dict[int, torch.Tensor] = {}

    def work(start: int, stop: int) -> None:
        block = points(start, stop).to(device)  # (m, N, C, H, W)
        m, n = block.shape[:2]
        with torch.no_grad():
            logits = model(laid_out(block.reshape(m * n, *block.shape[2:])))  # (m·N, K)
        chunks[start] = logits.reshape(m, n, -1)

    def after(done: int, _: int) -> None:
        _report(progress, done, count)
        if partial is not None:
            partial(done, torch.cat([chunks[k] for k in sorted(chunks)]))

    item = tuple(shape)
    TUNER.run(model, _key(model, "forward_points", item), count, TUNER.cap(item, device) * 4, work, after)
    return torch.cat([chunks[k] for k in sorted(chunks)])


def input_gradient(model: nn.Module, x: torch.Tensor, cotangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward and one backward pass: `(logits (N, K), Σ_k cotangent[n, k] ∂logits[n, k]/∂x[n])`.

    A cotangent may be a callable `logits -> (N, K)` when it depends on the logits (e.g. the
    predicted class), so one forward pass serves both.
    """
    with lane.hold(model_device(model)):  # one turn for both passes
        x_leaf, logits = forward_with_graph(model, x)
        weights = cotangent(logits.detach()) if callable(cotangent) else cotangent
        return logits.detach(), backward(x_leaf, logits, weights, keep=False)


def objective_gradient(
    model: nn.Module,
    leaves: tuple[torch.Tensor, ...],
    build: Callable[..., torch.Tensor],
    objective: Callable[..., torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, ...]]:
    """Gradient of a scalar objective with respect to tensors other than the model's weights.

    `build(*leaves)` makes the model's input `(B, C, H, W)` from the leaves (e.g. a mask and an
    image); `objective(logits, *leaves)` returns a scalar. Returns `(objective, logits, grads)`
    with one gradient per leaf. Mask optimisation uses this; the model is never changed.
    """
    device = model_device(model)
    leaves = tuple(leaf.detach().to(device).requires_grad_(True) for leaf in leaves)
    with lane.hold(device):
        with torch.enable_grad():
            logits = model(build(*leaves))
            value = objective(logits, *leaves)
        grads = torch.autograd.grad(value, leaves)
    return value.detach(), logits.detach(), grads


# --------------------------------------------------------------------------- a layer's activations
# (CAM maps: kept apart from the input-gradient passes above, which never hook the model.)


class LayerUnavailable(ValueError):
    """A layer's activations cannot be had: an unknown name, a layer that gives no feature map or
    runs more than once per pass, or a TorchScript model (its layers cannot be hooked)."""


TORCHSCRIPT_LAYERS = (
    "this is a TorchScript model: its layers run as compiled code that Python hooks cannot see, "
    "so its activations (and the CAM maps made from them) are not available. The other methods "
    "work on it; for CAM maps, load the model from its Python class."
)


def hookable_layer(model: nn.Module, name: str) -> nn.Module:
    """The module called `name` in `model.named_modules()`, checked to be one a hook can watch.

    LayerUnavailable when the name is unknown or the layer lies inside a TorchScript module.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise LayerUnavailable(f"Layer {name!r}: {TORCHSCRIPT_LAYERS}")
    modules = dict(model.named_modules())
    if name not in modules or name == "":
        raise LayerUnavailable(
            f"the model has no layer {name!r}; give a module name as model.named_modules() lists it "
            f"(engines.conv_layers(model) lists the convolutional ones)"
        )
    parts = name.split(".")
    for depth in range(1, len(parts) + 1):  # every module on the way down, the layer itself last
        if isinstance(modules.get(".".join(parts[:depth])), torch.jit.ScriptModule):
            raise LayerUnavailable(f"Layer {name!r}: {TORCHSCRIPT_LAYERS}")
    return modules[name]


def layer_gradient(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    cotangent=None,
) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """One forward pass that records the output `A` of `layer`, and one backward pass down to it.

    Returns `(logits (N, K), A (N, K', h, w), G)` with `G = Σ_k cotangent[n, k] ∂logits[n, k]/∂A`
    of A's shape, taken by `torch.autograd.grad`; with `cotangent=None` there is no backward pass
    and no graph, and G is None. A cotangent may be a callable `logits -> (N, K)` (e.g. the
    predicted class), so one forward pass serves both.

    The hook hands the rest of the network a copy of A that is cut from the graph below it: the
    backward pass stops at the layer (nothing below it is differentiated), and an in-place
    operation after the layer (`ReLU(inplace=True)`) changes the copy, never the recorded A. The
    hook is removed in `finally`, whatever happens; the model's weights and mode are never touched.
    """
    module = hookable_layer(model, layer)
    recorded: list[torch.Tensor] = []
    wanted = cotangent is not None

    owner = threading.get_ident()

    def hook(_module, _inputs, output):
        if threading.get_ident() != owner:
            return None  # another session's pass on the shared model: left exactly as it is
        if not isinstance(output, torch.Tensor) or output.dim() != 4:
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            raise LayerUnavailable(
                f"layer {layer!r} gives {shape}, not a feature map (N, channels, height, width); "
                "pick a convolutional layer or block"
            )
        activation = output.detach().requires_grad_(wanted)
        recorded.append(activation)
        return activation.clone()

    device = model_device(model)
    with lane.hold(device):  # one turn for both passes; the hook lives only inside it
        handle = module.register_forward_hook(hook)
        try:
            with torch.set_grad_enabled(wanted):
                logits = model(laid_out(x.detach().to(device)))
        finally:
            handle.remove()
        if len(recorded) != 1:
            raise LayerUnavailable(
                f"layer {layer!r} ran {len(recorded)} times in one forward pass; pick a layer that runs once"
            )
        activation = recorded[0]
        if not wanted:
            return logits.detach(), activation.detach(), None
        weights = cotangent(logits.detach()) if callable(cotangent) else cotangent
        (grad,) = torch.autograd.grad(logits, activation, grad_outputs=weights.to(logits))
        return logits.detach(), activation.detach(), grad.detach()


def layer_shapes(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple[tuple[int, ...], int]]:
    """One forward pass without a graph, recording each named layer's output: `{name: (shape of
    its output for image 0, calls)}` for layers whose output is a tensor (a layer that does not
    run is left out). Hooks are removed in `finally`."""
    modules = {name: hookable_layer(model, name) for name in names}
    seen: dict[str, tuple[tuple[int, ...], int]] = {}

    owner = threading.get_ident()

    def recorder(name: str):
        def hook(_module, _inputs, output):
            if threading.get_ident() == owner and isinstance(output, torch.Tensor):
                calls = seen.get(name, ((), 0))[1] + 1
                seen[name] = (tuple(output.shape[1:]), calls)

        return hook

    handles = []
    with lane.hold(model_device(model)):
        try:
            for name, module in modules.items():
                handles.append(module.register_forward_hook(recorder(name)))
            with torch.no_grad():
                model(laid_out(x.detach().to(model_device(model))))
        finally:
            for handle in handles:
                handle.remove()
    return seen
