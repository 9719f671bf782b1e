"""One record per saliency method: what it is, its settings, its cost, and the code that computes it.

Registering a method (the `register` decorator) makes it appear in `engines.methods()`, in the
dashboard's method picker (whose widgets are built from its `Param` list) and in the contract
tests, which run on every registered method.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

FAMILIES = ("linear", "signed", "nonlinear", "mask", "occlusion")


@dataclass(frozen=True)
class Param:
    """One setting of a method: its default, type and valid range, and what it means.

    `kind` is "int", "float", "choice" or "bool". `optional` allows None, whose meaning is
    given by `none_means` (e.g. "all classes"). `low`/`high` bound numbers (inclusive).
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
class MethodInfo:
    """Everything known about a method before it runs.

    `compute(ctx, **settings)` returns `(attribution (N, C, H, W) or None, map (N, H, W), signed)`.
    `cost(settings, num_classes, size)` says how many passes one image of `size` (H, W) needs.
    `shares_gradient` says the method uses the clean pass's gradient (`Context.gradient`), so
    that pass must keep its graph; the others get a cheaper forward pass without one.
    """

    name: str
    label: str
    family: str
    signed: bool
    summary: str
    reference: str
    params: tuple[Param, ...]
    compute: Callable[..., tuple] = field(repr=False)
    cost_fn: Callable[[dict, int, tuple[int, int]], Cost] = field(repr=False)
    shares_gradient: bool = False

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

    def cost(self, settings: Optional[dict] = None, num_classes: int = 1000, size: tuple[int, int] = (224, 224)) -> Cost:
        """Passes one image of `size` (H, W) pixels needs with these settings and `num_classes`."""
        return self.cost_fn(self.settings(settings), num_classes, tuple(size))


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
    cost: Callable[[dict, int, tuple[int, int]], Cost],
    shares_gradient: bool = False,
) -> Callable:
    """Decorator: registers `compute(ctx, **settings)` as the method `name`."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}")

    def wrap(compute: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = MethodInfo(
            name, label, family, signed, summary, reference, params, compute, cost, shares_gradient
        )
        return compute

    return wrap


def method_names() -> list[str]:
    """Registered method names, in registration order."""
    return list(_REGISTRY)


def method_info(name: str) -> MethodInfo:
    """The record of a registered method; ValueError listing the known names otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; known methods: {', '.join(_REGISTRY)}") from None
