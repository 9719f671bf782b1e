"""The first run of a person's TorchScript model, in its own process (see `script_check.py`).

Run as `python -I first_run.py REQUEST` with the model's bytes on stdin; imports nothing from
the project. After importing torch it limits itself: address space (what it uses now plus the
request's `memory_bytes`), CPU time, wall time (an alarm), and file size 0, so any file write
fails. Then it loads the model, runs one forward and one backward pass on a grey image and
prints one JSON line: `{"shape", "finite", "seconds"}` or `{"error", "message"}`.
"""

import json
import resource
import signal
import sys
import time

import torch


def _address_space() -> int:
    """Bytes of address space this process maps now (VmSize)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _limit(request: dict) -> None:
    seconds = max(1, int(request["seconds"] + 0.999))
    used = resource.getrusage(resource.RUSAGE_SELF)
    cpu = int(used.ru_utime + used.ru_stime) + seconds + 2
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    space = _address_space() + int(request["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (space, space))
    signal.alarm(seconds)


def main() -> None:
    request = json.loads(sys.argv[1])
    torch.set_num_threads(1)
    data = sys.stdin.buffer.read()
    import io

    buffer = io.BytesIO(data)
    _limit(request)
    try:
        net = torch.jit.load(buffer, map_location="cpu")
        net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        size = request["input_size"]
        mean = torch.tensor(request["mean"]).reshape(1, -1, 1, 1)
        std = torch.tensor(request["std"]).reshape(1, -1, 1, 1)
        x = torch.full((1, 3, size, size), 0.5, requires_grad=True)
        began = time.perf_counter()
        logits = net((x - mean) / std)
        if not isinstance(logits, torch.Tensor):
            raise TypeError(f"the model returns a {type(logits).__name__}, not a tensor of logits")
        if logits.requires_grad:
            torch.autograd.grad(logits.sum(), x, allow_unused=True)
        seconds = time.perf_counter() - began
        report = {"shape": list(logits.shape), "finite": bool(torch.isfinite(logits).all()), "seconds": seconds}
    except MemoryError:
        report = {"error": "MemoryError", "message": "out of memory", "memory": True}
    except Exception as error:  # the model's failure, reported to the server in words
        text = str(error)
        memory = "can't allocate memory" in text or "not enough memory" in text or "bad_alloc" in text
        report = {"error": type(error).__name__, "message": text.splitlines()[0] if text else "", "memory": memory}
    signal.alarm(0)
    sys.stdout.write("\n" + json.dumps(report) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
