"""The pass module: chunking never changes results, the tuner settles, memory errors shrink chunks."""

from __future__ import annotations

import pytest
import torch

from engines import passes


def test_forward_in_chunks_equals_one_batch(smooth_model):
    x = torch.rand(37, 3, 8, 8)
    with torch.no_grad():
        whole = smooth_model(x)
    torch.testing.assert_close(passes.forward(smooth_model, x), whole, rtol=1e-5, atol=1e-6)


def test_backward_many_equals_one_backward_per_cotangent(smooth_model):
    x = torch.rand(2, 3, 8, 8)
    x_leaf, logits = passes.forward_with_graph(smooth_model, x)
    cotangents = torch.randn(9, 2, 6)  # (M, N, K)
    got = {}
    passes.backward_many(smooth_model, x_leaf, logits, cotangents, lambda s, g: got.update({s + i: g[i] for i in range(len(g))}))
    assert sorted(got) == list(range(9))
    for m in range(9):
        (expected,) = torch.autograd.grad(logits, x_leaf, cotangents[m], retain_graph=True)
        torch.testing.assert_close(got[m], expected, rtol=1e-5, atol=1e-7)


def test_tuner_covers_every_item_once_and_settles(smooth_model):
    tuner = passes.ChunkTuner()
    seen = []
    for _ in range(4):
        tuner.run(smooth_model, ("test",), 50, 16, lambda a, b: seen.extend(range(a, b)))
    assert sorted(seen) == sorted(list(range(50)) * 4)
    assert tuner.chosen(smooth_model, ("test",)) in {1, 2, 4, 8, 16}


def test_tuner_prefers_the_size_that_is_fastest_per_item(smooth_model):
    import time

    tuner = passes.ChunkTuner()
    cost_per_call = {1: 0.004, 2: 0.005, 4: 0.006, 8: 0.030}  # per-item best at 4

    def work(a, b):
        time.sleep(cost_per_call[b - a] if b - a in cost_per_call else 0.05)

    for _ in range(3):
        tuner.run(smooth_model, ("sleep",), 15, 8, work)
    assert tuner.chosen(smooth_model, ("sleep",)) == 4


def test_out_of_memory_halves_the_chunk_and_finishes(smooth_model):
    tuner = passes.ChunkTuner()
    tuner.run(smooth_model, ("oom",), 64, 64, lambda a, b: None)  # settle on a large size
    done = []

    def work(a, b):
        if b - a > 2:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2 GiB")
        done.extend(range(a, b))

    tuner.run(smooth_model, ("oom",), 10, 64, work)
    assert sorted(done) == list(range(10))
    assert tuner.chosen(smooth_model, ("oom",)) <= 2


def test_out_of_memory_for_one_item_is_a_clear_error(smooth_model):
    def work(a, b):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(passes.OutOfMemory, match="smaller image"):
        passes.ChunkTuner().run(smooth_model, ("oom1",), 3, 4, work)


def test_other_errors_pass_through(smooth_model):
    with pytest.raises(RuntimeError, match="shape mismatch"):
        passes.ChunkTuner().run(smooth_model, ("err",), 3, 4, lambda a, b: (_ for _ in ()).throw(RuntimeError("shape mismatch")))


def test_a_progress_callback_can_cancel(smooth_model):
    def stop(done, total):
        raise passes.Cancelled

    with pytest.raises(passes.Cancelled):
        passes.forward(smooth_model, torch.rand(8, 3, 8, 8), progress=stop)


def test_device_choice():
    assert passes.pick_device("auto").type == passes.available_devices()[0]
    assert passes.pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available"):
            passes.pick_device("cuda")


def test_memory_cap_shrinks_with_image_size():
    tuner = passes.ChunkTuner()
    cpu = torch.device("cpu")
    assert tuner.cap((3, 224, 224), cpu) < tuner.cap((3, 64, 64), cpu)
    assert tuner.cap((3, 4096, 4096), cpu) == 1
