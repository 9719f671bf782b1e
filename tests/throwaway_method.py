"""A method registered from this one file and nowhere else: the squared gradient, in a family of its
own. `tests/test_throwaway_method.py` finds it in the picker, the audit, the benchmark and the
contract tests without any other edit. Loaded as a pytest plugin (`-p throwaway_method`) it is
registered before the contract tests are collected."""

from __future__ import annotations

import engines
from engines.core.explain import Context
from engines.core.registry import Param, Stage, register

NAME = "throwaway"

if NAME not in engines.methods():

    @register(
        NAME,
        label="Squared gradient (throwaway)",
        family="scratch",
        signed=False,
        summary="The gradient raised to a power, summed over channels: a test's method.",
        reference="none: a test fixture",
        params=(Param("power", 2, "int", "Power the gradient is raised to.", low=1, high=4),),
        plan=lambda s, k, hw: [Stage("gradient", 1)],
        shares_gradient=True,
        quick=lambda size: {"power": 1},
    )
    def throwaway(ctx: Context, power: int) -> tuple:
        """`Σ_channels |g|^power`."""
        g = ctx.gradient()
        return g, (g.abs() ** power).sum(1), False
