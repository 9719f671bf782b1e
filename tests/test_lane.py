"""The compute lane: short calls first, sessions served fairly, nothing changed but the order.

No test here depends on how long anything takes: tickets are queued while the test holds the
lane, and the order in which they are granted is read from the lane's log.
"""

from __future__ import annotations

import contextlib
import threading
import time
import types

import pytest
import torch
from torch import nn

from engines.core import lane, passes
from engines.core.lane import Lane, Ticket, pick


def _queue(the_lane: Lane, session, stream=None, urgent=False, prompt=False) -> threading.Thread:
    """Starts a thread that asks for the lane as `session`/`stream` (a short call if `urgent`, a
    follow-up if `prompt`), and returns once it waits."""
    before = the_lane.waiting()

    def ask() -> None:
        with lane.session(session, stream), (lane.urgent() if urgent else contextlib.nullcontext()), \
                (lane.prompt() if prompt else contextlib.nullcontext()), the_lane.hold():
            pass

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30  # a guard against a hang, not a timing assertion
    while the_lane.waiting() == before and time.monotonic() < deadline:
        time.sleep(0.001)
    assert the_lane.waiting() == before + 1
    return thread


def _granted(queued: list[tuple], *, holder="test") -> list[tuple]:
    """Queues `(session, stream, urgent)` tickets in order while the lane is held, then releases
    it and returns the order in which they were granted."""
    the_lane = Lane("test")
    held = the_lane.hold()
    with lane.session(holder):
        held.__enter__()
    the_lane.log = []
    threads = [_queue(the_lane, *ticket) for ticket in queued]
    held.__exit__(None, None, None)
    for thread in threads:
        thread.join(30)
    return the_lane.log


def test_sessions_take_turns_instead_of_one_sessions_whole_job_first():
    """Three streams of session A queued before B and C: A, B, C, then A's others."""
    order = _granted([("A", 1, False), ("A", 2, False), ("A", 3, False), ("B", 1, False), ("C", 1, False)])
    assert order == [("A", 1, False), ("B", 1, False), ("C", 1, False), ("A", 2, False), ("A", 3, False)]


def test_a_short_call_goes_ahead_of_the_next_chunk_of_long_maps():
    """An urgent ticket queued last is granted first; then the long ones in fair order."""
    order = _granted([("A", None, False), ("B", None, False), ("C", None, True)])
    assert order[0] == ("C", None, True)
    assert order[1:] == [("A", None, False), ("B", None, False)]


def test_short_calls_among_themselves_keep_arrival_order():
    order = _granted([("A", None, True), ("B", None, True), ("A", None, False)])
    assert order == [("A", None, True), ("B", None, True), ("A", None, False)]


def test_pick_prefers_the_session_served_least_recently_then_arrival():
    """A session never served goes before one served before; equals go in arrival order."""
    waiting = [Ticket("A", None, False, 0), Ticket("B", None, False, 1), Ticket("C", None, False, 2)]
    assert pick(waiting, {"A": 5}).session == "B"
    assert pick(waiting, {}).session == "A"
    assert pick(waiting, {"A": 5, "B": 3, "C": 4}).session == "B"


def test_the_lane_is_reentrant_for_its_holder():
    """A pass inside a pass (the same thread) does not wait for itself."""
    the_lane = Lane("test")
    with the_lane.hold(), the_lane.hold():
        assert the_lane.held_by_me()
    assert not the_lane.held_by_me() and the_lane.waiting() == 0


def test_every_chunk_of_passes_holds_its_devices_lane():
    """The model sees the lane held whenever it runs, for every kind of pass."""
    cpu = lane.lane_for(torch.device("cpu"))

    class Watch(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 3)
            self.held = []

        def forward(self, x):
            self.held.append(cpu.held_by_me())
            return self.fc(x.flatten(1))

    model = Watch().eval().requires_grad_(False)
    x = torch.rand(6, 3, 2, 2)
    passes.forward(model, x)
    passes.input_gradient(model, x, torch.ones(6, 3))
    passes.forward_points(model, lambda a, b: x[None].expand(b - a, -1, -1, -1, -1), 5, tuple(x.shape))
    passes.gradient_sum(model, lambda a, b: x[None].expand(b - a, -1, -1, -1, -1), 5, tuple(x.shape),
                        torch.zeros(6, dtype=torch.long), torch.ones(5))
    assert model.held and all(model.held)


def test_while_someone_waits_a_chunk_is_cut_to_the_time_budget(monkeypatch):
    """With a budget of no time and a waiting session, every chunk after the first measured one
    holds one item, and the result is unchanged."""
    sizes = []

    class Count(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(12, 3)

        def forward(self, x):
            sizes.append(len(x))
            return self.fc(x.flatten(1))

    model = Count().eval().requires_grad_(False)
    x = torch.rand(40, 3, 2, 2)
    expected = model.fc(x.flatten(1))
    monkeypatch.setattr(lane, "CHUNK_SECONDS", 0.0)
    monkeypatch.setattr(Lane, "contended", lambda self: True)
    out = passes.forward(model, x)
    torch.testing.assert_close(out, expected)
    assert sizes[0] == 1 and set(sizes[1:]) == {1}


def test_device_keys_name_one_lane_per_device():
    assert lane.device_key(torch.device("cpu")) == "cpu"
    assert lane.lane_for(torch.device("cpu")) is lane.lane_for(torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_each_cuda_device_has_its_own_lane():
    assert lane.device_key(torch.device("cuda")) == f"cuda:{torch.cuda.current_device()}"
    assert lane.lane_for(torch.device("cuda:0")) is not lane.lane_for(torch.device("cpu"))


def test_within_a_session_a_map_without_a_first_picture_goes_first():
    """Of one session's streams, the eager one (no preview yet) is served before those served less recently."""
    waiting = [Ticket("A", 1, False, 0), Ticket("A", 2, False, 1, eager=True), Ticket("B", 1, False, 2)]
    assert pick(waiting, {"A": 3, ("A", 1): 1, ("A", 2): 3, "B": 2}).session == "B"  # sessions still take turns
    assert pick(waiting, {"A": 1, ("A", 1): 0, ("A", 2): 1, "B": 2}).stream == 2


def test_a_streams_follow_up_goes_ahead_of_its_sessions_other_streams_but_not_other_sessions():
    """Building the preview of the chunk a stream just ran ("prompt") is not held back a whole
    round of its session's turns; other sessions and short calls keep their places."""
    waiting = [Ticket("A", 1, False, 0, eager=True), Ticket("A", 2, False, 1, eager=True),
               Ticket("A", 3, False, 2, prompt=True)]
    served = {"A": 4, ("A", 1): 1, ("A", 2): 2, ("A", 3): 4}
    assert pick(waiting, served).stream == 3  # served most recently, and still first
    other = Ticket("B", 1, False, 3)
    assert pick(waiting + [other], {**served, "B": 2}).session == "B"
    short = Ticket("C", None, True, 4)
    assert pick(waiting + [short], served) is short


def test_a_prompt_request_is_granted_before_its_sessions_earlier_streams():
    the_lane = Lane("test")
    held = the_lane.hold()
    with lane.session("holder"):
        held.__enter__()
    the_lane.log = []
    first = _queue(the_lane, "A", 1)
    thread = _queue(the_lane, "A", 2, prompt=True)
    held.__exit__(None, None, None)
    for t in (first, thread):
        t.join(30)
    assert [stream for _, stream, _ in the_lane.log] == [2, 1]


def test_a_map_without_a_picture_cuts_its_chunks_shorter_than_the_others(monkeypatch):
    """An eager map's chunk takes EAGER_SECONDS of work whether or not anyone waits; while
    someone waits, a map with a picture takes CHUNK_SECONDS, and alone its tuned size: with 1 s
    per item known, 0.5 s gives one item, 3.5 s three, the tuned size eight."""

    class Count(nn.Module):
        def __init__(self, sizes):
            super().__init__()
            self.fc, self.sizes = nn.Linear(12, 3), sizes

        def forward(self, x):
            self.sizes.append(len(x))
            return self.fc(x.flatten(1))

    x = torch.rand(12, 3, 2, 2)
    monkeypatch.setattr(lane, "CHUNK_SECONDS", 3.5)
    monkeypatch.setattr(lane, "EAGER_SECONDS", 0.5)
    waiting = [True]
    monkeypatch.setattr(Lane, "contended", lambda self: waiting[0])
    readings = iter(range(10_000))  # each reading 1 s after the last
    clock = types.SimpleNamespace(perf_counter=readings.__next__, process_time=lambda: 0.0)
    monkeypatch.setattr(passes, "time", clock)
    for eager, contended, expected in ((True, True, 1), (True, False, 1), (False, True, 3), (False, False, 8)):
        waiting[0] = contended
        sizes: list[int] = []
        model = Count(sizes).eval().requires_grad_(False)
        key = passes._key(model, "forward", tuple(x.shape[1:]))
        passes.TUNER._trials.setdefault(model, {})[key] = passes._Trial(best=8, settled=True, rate=1.0)
        token = lane.set_eager(eager)
        try:
            passes.forward(model, x)
        finally:
            lane.reset_eager(token)
        assert sizes[0] == expected
