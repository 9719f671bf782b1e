"""Peers as the benchmark's reference: other libraries' implementations of the same map.

Each method's record lists its peers (`register(..., peers=...)`: Captum, pytorch-grad-cam,
TorchRay). A peer runs with our method's settings (same steps, samples, windows, baseline and
target), so the two compute the same numbers and only the speed differs. The peer's batching knob
is the one thing left free: the benchmark times it at its default and at the fastest of its
candidates. Peers are imported only when a reference is built: they are test and benchmark
dependencies (requirements-test.txt), not the dashboard's.
"""

from __future__ import annotations

from typing import Optional

from engines.core.registry import Peer, method_info, method_names


def reference(method: str, settings: dict, size: tuple[int, int]) -> Optional[Peer]:
    """The first installed peer of `method` that computes what it computes with these full
    `settings` on `(H, W)` images, or None."""
    for peer in method_info(method).peers:
        if peer.available() and peer.comparable(settings, tuple(size)):
            return peer
    return None


def any_available() -> bool:
    """Whether any registered method has an installed peer."""
    return any(p.available() for name in method_names() for p in method_info(name).peers)
