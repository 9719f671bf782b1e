"""One compute lane per device: every chunk of passes runs while holding its device's lane.

Browser sessions of one server (and the methods of one `explain_many` with previews) run torch
from their own threads. Left alone, N of them start N OpenMP teams on the same cores and every
one of them slows down by more than N, with no say in who goes first. The lane makes them take
turns, one chunk at a time, and chooses whose turn it is:

* **short calls first**: a call marked `urgent()` (`predict`, `occlude`, `occlude_box`, a
  response curve) goes ahead of the next chunk of any long map;
* **fair between sessions**: among the rest, the session served least recently goes next
  (sessions never served yet in the order they arrived), so a session's long job never runs
  whole while another waits; within a session, its streams (the methods of one call) take
  turns the same way, those whose map has shown no first picture yet going first, and a
  stream's own follow-up (`prompt()`: building the preview of the chunk it just ran) ahead of
  its session's other streams, so a picture is not held back a whole round of turns;
* **short chunks while anyone waits**: `contended()` tells the chunk tuner to cut its next
  chunk to about `CHUNK_SECONDS` of device time, so a waiting slider is answered quickly (also
  for `INTERACTIVE_SECONDS` after a short call, when the next one is probably coming); a
  map that has shown no picture yet cuts its chunks to `EAGER_SECONDS`, so every map of a
  panel shows its first picture early.

A session is a hashable key (`session(key)`); by default it is the calling thread, which is
what a Streamlit session's script thread is. The lane is re-entrant for the thread that holds
it. Nothing here changes a result: it only decides when each chunk runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import threading
import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Optional

import torch

from engines.core import runtime

CHUNK_SECONDS = 0.2
"""While anyone waits for the lane, a chunk is cut to about this much device time (a short call
then waits at most about this long, and its own pass fits in the rest of 0.3 s)."""
INTERACTIVE_SECONDS = 2.0
"""A lane that served a short call this recently counts as contended: a person moving a slider
sends the next call a moment after the last one answered, and must not find a long chunk in
the way when it comes."""
EAGER_SECONDS = 0.1
"""A chunk of a map that has shown no picture yet (previews asked for) is cut to about this much
device time: a panel of several maps takes one such chunk of each before the last shows a picture."""

_session: contextvars.ContextVar[Optional[Hashable]] = contextvars.ContextVar("engines_lane_session", default=None)
_stream: contextvars.ContextVar[Hashable] = contextvars.ContextVar("engines_lane_stream", default=None)
_urgent: contextvars.ContextVar[bool] = contextvars.ContextVar("engines_lane_urgent", default=False)
_eager: contextvars.ContextVar[bool] = contextvars.ContextVar("engines_lane_eager", default=False)
_prompt: contextvars.ContextVar[bool] = contextvars.ContextVar("engines_lane_prompt", default=False)


def set_eager(value: bool) -> contextvars.Token:
    """Marks this code's chunks as belonging to a map that has shown no picture yet (or, False,
    one that has): within its session such chunks go first. Returns a token for `reset_eager`."""
    return _eager.set(value)


def reset_eager(token: contextvars.Token) -> None:
    _eager.reset(token)


def is_eager() -> bool:
    """Whether the calling code's chunks belong to a map that has shown no picture yet."""
    return _eager.get()


@contextlib.contextmanager
def prompt() -> Iterator[None]:
    """Inside this block the caller's requests go ahead of its session's other streams (not of
    other sessions, nor of short calls): the follow-up of a chunk it has just run."""
    token = _prompt.set(True)
    try:
        yield
    finally:
        _prompt.reset(token)


@contextlib.contextmanager
def session(key: Hashable, stream: Hashable = None) -> Iterator[None]:
    """Inside this block the calling code's chunks count as session `key` (and its `stream`)."""
    tokens = (_session.set(key), _stream.set(stream))
    try:
        yield
    finally:
        _stream.reset(tokens[1])
        _session.reset(tokens[0])


def current_session() -> Hashable:
    """The session the calling code's chunks count as: the one set by `session`, else its thread."""
    key = _session.get()
    return ("thread", threading.get_ident()) if key is None else key


def current_stream() -> Hashable:
    return _stream.get()


@contextlib.contextmanager
def urgent() -> Iterator[None]:
    """Inside this block every chunk is a short interactive call: it goes ahead of long maps."""
    token = _urgent.set(True)
    try:
        yield
    finally:
        _urgent.reset(token)


def is_urgent() -> bool:
    return _urgent.get()


@dataclass
class Ticket:
    """One request for the lane: who asks, how urgently, and when it arrived."""

    session: Hashable
    stream: Hashable
    urgent: bool
    arrival: int
    granted: bool = field(default=False)
    eager: bool = False
    prompt: bool = False


def pick(waiting: list[Ticket], served: dict[Hashable, int]) -> Ticket:
    """The ticket to serve next: urgent ones first; then the session served least recently
    (never served: -1); within it, a stream's follow-up ("prompt") first, then streams whose map
    has shown no picture yet ("eager"), then the stream served least recently, then arrival order.

    `served` maps a session, and a `(session, stream)` pair, to the number of its last grant.
    """
    return min(
        waiting,
        key=lambda t: (not t.urgent, served.get(t.session, -1), not t.prompt, not t.eager,
                       served.get((t.session, t.stream), -1), t.arrival),
    )


class Lane:
    """A fair, re-entrant lock for one device (see the module's docstring)."""

    def __init__(self, name: str):
        self.name = name
        self._condition = threading.Condition(threading.Lock())
        self._holder: Optional[int] = None  # thread id
        self._depth = 0
        self._waiting: list[Ticket] = []
        self._served: dict[Hashable, int] = {}
        self._grants = itertools.count()
        self._arrivals = itertools.count()
        self._last_urgent = -float("inf")
        self.log: Optional[list[tuple[Hashable, Hashable, bool]]] = None
        """Set to a list to record `(session, stream, urgent)` of every grant, in order (tests)."""

    def waiting(self) -> int:
        """How many requests wait for the lane now."""
        with self._condition:
            return len(self._waiting)

    def contended(self) -> bool:
        """True while anyone (other than the holder) waits for the lane, or a short call was
        served less than `INTERACTIVE_SECONDS` ago."""
        return bool(self._waiting) or time.monotonic() - self._last_urgent < INTERACTIVE_SECONDS

    def held_by_me(self) -> bool:
        return self._holder == threading.get_ident()

    def _grant(self, ticket: Ticket) -> None:
        grant = next(self._grants)
        self._served[ticket.session] = grant
        self._served[(ticket.session, ticket.stream)] = grant
        ticket.granted = True
        if ticket.urgent:
            self._last_urgent = time.monotonic()
        if self.log is not None:
            self.log.append((ticket.session, ticket.stream, ticket.urgent))

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Waits for this caller's turn, holds the lane for the block, then hands it on."""
        me = threading.get_ident()
        with self._condition:
            if self._holder == me:  # re-entrant: a pass inside a pass
                self._depth += 1
                reentered = True
            else:
                reentered = False
                ticket = Ticket(current_session(), current_stream(), is_urgent(), next(self._arrivals),
                                eager=_eager.get(), prompt=_prompt.get())
                if self._holder is None and not self._waiting:
                    self._grant(ticket)
                else:
                    self._waiting.append(ticket)
                    while not ticket.granted:
                        self._condition.wait()
                self._holder, self._depth = me, 1
        if not reentered and self.name == "cpu":
            runtime.GOVERNOR.apply()  # the cores other processes leave free (ENGINES_THREADS=auto)
        try:
            yield
        finally:
            with self._condition:
                self._depth -= 1
                if not reentered or self._depth == 0:
                    self._release()

    def _release(self) -> None:
        """Hands the lane to the next ticket at once (so the releasing thread cannot take it back
        before a waiting one), or frees it."""
        self._holder, self._depth = None, 0
        if self._waiting:
            chosen = pick(self._waiting, self._served)
            self._waiting.remove(chosen)
            self._grant(chosen)
            self._holder = -1  # reserved for the chosen thread, which sets itself
            self._condition.notify_all()


_LANES: dict[str, Lane] = {}
_LANES_LOCK = threading.Lock()


def device_key(device: torch.device) -> str:
    """The lane's name for a device: "cpu", "mps", or "cuda:<index>" (one lane per CUDA device)."""
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index}"
    return device.type


def lane_for(device: torch.device) -> Lane:
    """The lane of this device, made on first use."""
    key = device_key(device)
    with _LANES_LOCK:
        if key not in _LANES:
            _LANES[key] = Lane(key)
        return _LANES[key]


def hold(device: torch.device):
    """`lane_for(device).hold()`: the block runs in the device's lane."""
    return lane_for(device).hold()
