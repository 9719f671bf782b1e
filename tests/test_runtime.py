"""The CPU runtime settings: the OpenMP wait policy and the thread count are settings, not forced."""

from __future__ import annotations

import pytest

import engines
from engines.core import runtime


def test_the_wait_policy_comes_from_the_setting_and_never_overrides_one_already_set():
    assert runtime.configure_openmp({}) == runtime.DEFAULT_WAIT_POLICY
    env = {"ENGINES_OMP_WAIT_POLICY": "passive"}
    assert runtime.configure_openmp(env) == "passive" and env["OMP_WAIT_POLICY"] == "PASSIVE"
    env = {"ENGINES_OMP_WAIT_POLICY": "passive", "OMP_WAIT_POLICY": "ACTIVE"}
    assert runtime.configure_openmp(env) == "active" and env["OMP_WAIT_POLICY"] == "ACTIVE"
    env = {"ENGINES_OMP_WAIT_POLICY": "openmp"}
    assert runtime.configure_openmp(env) == "openmp" and "OMP_WAIT_POLICY" not in env


def test_a_bad_wait_policy_or_thread_count_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="passive, active, openmp"):
        runtime.configure_openmp({"ENGINES_OMP_WAIT_POLICY": "sometimes"})
    with pytest.raises(ValueError, match="auto"):
        runtime.threads_from_environment({"ENGINES_THREADS": "many"})
    with pytest.raises(ValueError, match="whole number"):
        engines.set_threads(0)


def test_threads_are_auto_unless_a_number_is_given():
    assert runtime.threads_from_environment({}) is None
    assert runtime.threads_from_environment({"ENGINES_THREADS": "auto"}) is None
    assert runtime.threads_from_environment({"ENGINES_THREADS": "3"}) == 3


def test_auto_runs_on_the_cores_other_processes_leave_free():
    """Nobody else busy: every core; one core busy elsewhere on two: one thread; never none."""
    assert runtime.free_cores(2, 0.0) == 2
    assert runtime.free_cores(2, 0.9) == 1
    assert runtime.free_cores(2, 2.0) == 1
    assert runtime.free_cores(16, 4.2) == 12


def test_set_threads_fixes_the_count_and_none_returns_to_auto():
    try:
        assert engines.set_threads(1) == 1
        assert engines.runtime_settings()["thread_mode"] == "fixed" and engines.runtime_settings()["threads"] == 1
    finally:
        engines.set_threads(None)
    assert engines.runtime_settings()["thread_mode"] == "auto"
