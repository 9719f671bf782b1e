"""One record per saliency method: everything the project knows about it, registered in its own file.

Registering a method (the `register` decorator) makes it appear in `engines.methods()`, in the
dashboard's method picker (whose widgets are built from its `Param` list, under its family, and
in the live-occlusion picker when it is `live`), in the audit, in the benchmark (its pass-floor
`plan`, its `quick` settings and its `peers`) and in the contract tests, which run on every
registered method. Families come from the registrations, in the order they first appear.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Param:
    """One setting of a method: its default, type and valid range, and what it means.

    `kind` is "int", "float", "choice", "bool" or "layer" (a module name as
    `model.named_modules()` gives it; whether the model has it is checked when the method runs).
    `optional` allows None, whose meaning is given by `none_means` (e.g. "all classes").
    `low`/`high` bound numbers (inclusive).
    """

    name: str
    default: Any
    kind: str
    help: str
    low: Optional[float] = None
    high: Optional[float] = None
    choices: tuple = ()
    optional: bool = False
    none_means: str = ""
    unit: str = ""

    def valid_range(self) -> str:
        """The valid values in words, as used in error messages and the UI."""
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "bool":
            text = "True or False"
        elif self.kind == "layer":
            text = "a layer name as model.named_modules() gives it"
        else:
            low = "-inf" if self.low is None else f"{self.low:g}"
            high = "inf" if self.high is None else f"{self.high:g}"
            text = f"{'an integer' if self.kind == 'int' else 'a number'} in [{low}, {high}]"
        if self.optional:
            text += f", or None ({self.none_means})"
        return text

    def check(self, value: Any) -> Any:
        """`value` converted to this parameter's type; ValueError naming the parameter otherwise."""
        if value is None and self.optional:
            return None
        problem = f"{self.name} must be {self.valid_range()}; got {_shown(value)}"
        if self.kind == "choice":
            if value not in self.choices:
                raise ValueError(problem)
            return value
        if self.kind == "bool":
            if not isinstance(value, bool):
                raise ValueError(problem)
            return value
        if self.kind == "layer":
            if not isinstance(value, str) or not value.strip() or len(value) > 500:
                raise ValueError(problem)
            return value.strip()
        if isinstance(value, bool) or type(value).__name__ == "bool_" or not isinstance(value, numbers.Real):
            raise ValueError(problem)  # numpy ints and floats are Real and accepted; bools are not numbers here
        if isinstance(value, numbers.Integral):
            value = int(value)  # exact however large: compared with the range, never converted to float first
            if self.kind == "float" and abs(value) > 1e308:
                raise ValueError(problem)
        else:
            value = float(value)
            if not math.isfinite(value) or (self.kind == "int" and not value.is_integer()):
                raise ValueError(problem)
            if self.kind == "int":
                value = int(value)
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            raise ValueError(problem)
        return float(value) if self.kind == "float" else value


def _shown(value: Any) -> str:
    """`repr(value)` for a message, cut short (a 5000-digit integer cannot even be printed)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Cost:
    """Model passes one image costs: forward and backward passes (a backward ≈ two forwards)."""

    forward: int
    backward: int

    @property
    def passes(self) -> int:
        return self.forward + self.backward


@dataclass(frozen=True)
class Stage:
    """`repeats` × (`items` passes of one `kind`), one repeat after the other: a method's passes.

    kind "forward": forward passes without a graph; "gradient": forward + backward passes, one
    per item; "vjp": one forward pass with its graph, then `items` backward passes over it.
    Items of one repeat may be batched; repeats are sequential (each depends on the last).
    """

    kind: str
    items: int
    repeats: int = 1

    def __post_init__(self):
        if self.kind not in ("forward", "gradient", "vjp"):
            raise ValueError(f"a stage's kind is 'forward', 'gradient' or 'vjp'; got {self.kind!r}")

    @property
    def cost(self) -> Cost:
        if self.kind == "forward":
            return Cost(self.items * self.repeats, 0)
        if self.kind == "gradient":
            return Cost(self.items * self.repeats, self.items * self.repeats)
        return Cost(self.repeats, self.items * self.repeats)


def plan_cost(stages: list[Stage]) -> Cost:
    """Forward and backward passes of a whole plan."""
    return Cost(sum(s.cost.forward for s in stages), sum(s.cost.backward for s in stages))


Plan = Callable[[dict, int, tuple[int, int]], list[Stage]]
"""`plan(settings, num_classes, (H, W)) -> stages`: every pass one image costs, the clean pass
that gives the explanation its logits included (one convention for every method)."""


@dataclass(frozen=True)
class Peer:
    """Another library's implementation of the same map: the oracle in the tests, the reference
    in the benchmark and the faithfulness tables.

    `build(model, x, target, settings, knob)` returns a call computing their attribution with our
    settings; `to_map(their_output, settings)` turns it into our `(N, H, W)` map. `knob` names their batching argument
    (None when there is none), `default` its value when left out, `candidates(settings)` the
    values worth trying for their fastest setting. `comparable(settings, (H, W))` says whether
    they compute what we compute with these settings. `library` is the module to import.
    """

    library: str
    label: str
    build: Callable[..., Callable[[], Any]] = field(repr=False)
    to_map: Callable[[Any, dict], Any] = field(repr=False)
    knob: Optional[str] = None
    default: Any = None
    candidates: Callable[[dict], list] = field(default=lambda settings: [], repr=False)
    comparable: Callable[[dict, tuple[int, int]], bool] = field(default=lambda settings, size: True, repr=False)

    def available(self) -> bool:
        """Whether the peer's library is installed (peers are test and benchmark dependencies)."""
        import importlib.util

        try:
            return importlib.util.find_spec(self.library) is not None
        except (ImportError, ValueError):
            return False


@dataclass(frozen=True)
class MethodInfo:
    """Everything known about a method before it runs.

    `compute(ctx, **settings)` returns `(attribution (N, C, H, W) or None, map (N, H, W), signed)`.
    `plan(settings, num_classes, size)` lists the passes one image of `size` (H, W) needs, and
    `cost` counts them (the clean pass included). `shares_gradient` says the method uses the clean
    pass's gradient (`Context.gradient`), so that pass must keep its graph; the others get a
    cheaper forward pass without one. `quick(size)` gives settings that run the method's real
    code on a handful of passes (the benchmark's `--quick`, fast tests). `peers` are other
    libraries' implementations of the same map. `live` says the map is cheap enough to compute
    while a person waits on the live-occlusion page.
    """

    name: str
    label: str
    family: str
    signed: bool
    summary: str
    reference: str
    params: tuple[Param, ...]
    compute: Callable[..., tuple] = field(repr=False)
    plan_fn: Plan = field(repr=False)
    shares_gradient: bool = False
    quick_fn: Callable[[tuple[int, int]], dict] = field(default=lambda size: {}, repr=False)
    peers: tuple[Peer, ...] = ()
    live: bool = False

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def settings(self, given: Optional[dict] = None) -> dict[str, Any]:
        """The full, checked settings: defaults overridden by `given`.

        Unknown names and out-of-range values raise ValueError naming the parameter.
        """
        given = dict(given or {})
        known = {p.name: p for p in self.params}
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ValueError(
                f"{self.name} has no setting {', '.join(unknown)}; its settings are: {', '.join(known) or 'none'}"
            )
        return {name: p.check(given.get(name, p.default)) for name, p in known.items()}

    def plan(self, settings: Optional[dict] = None, num_classes: int = 1000, size: tuple[int, int] = (224, 224)) -> list[Stage]:
        """The passes one image of `size` (H, W) pixels needs, as stages (the clean pass included)."""
        return self.plan_fn(self.settings(settings), num_classes, tuple(size))

    def cost(self, settings: Optional[dict] = None, num_classes: int = 1000, size: tuple[int, int] = (224, 224)) -> Cost:
        """Passes one image of `size` (H, W) pixels needs with these settings and `num_classes`."""
        return plan_cost(self.plan(settings, num_classes, size))

    def quick(self, size: tuple[int, int] = (224, 224)) -> dict:
        """Settings that run the real code on a handful of passes for `(H, W)` images."""
        return self.quick_fn(tuple(size))

    def peer(self) -> Optional[Peer]:
        """The first peer whose library is installed, or None."""
        return next((p for p in self.peers if p.available()), None)


_REGISTRY: dict[str, MethodInfo] = {}


def register(
    name: str,
    *,
    label: str,
    family: str,
    signed: bool,
    summary: str,
    reference: str,
    params: tuple[Param, ...] = (),
    plan: Plan,
    shares_gradient: bool = False,
    quick: Callable[[tuple[int, int]], dict] = lambda size: {},
    peers: tuple[Peer, ...] = (),
    live: bool = False,
) -> Callable:
    """Decorator: registers `compute(ctx, **settings)` as the method `name` with its whole record."""
    if not family or not family.isidentifier():
        raise ValueError(f"a family is a short lower-case name; got {family!r}")

    def wrap(compute: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = MethodInfo(
            name, label, family, signed, summary, reference, params, compute, plan, shares_gradient,
            quick, tuple(peers), live,
        )
        return compute

    return wrap


def unregister(name: str) -> None:
    """Removes a method (for tests that register a throwaway one); unknown names are ignored."""
    _REGISTRY.pop(name, None)


def method_families() -> list[str]:
    """The families of the registered methods, in the order they were first registered."""
    return list(dict.fromkeys(info.family for info in _REGISTRY.values()))


def method_names() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


def method_info(name: str) -> MethodInfo:
    """The record of a registered method; ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(_REGISTRY)}") from None
