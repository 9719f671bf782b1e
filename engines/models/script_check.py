"""Checking a person's TorchScript file before any of its code runs here.

TorchScript is not a sandbox: a scripted `forward` may call `torch.from_file(path, shared=True)`
and read or overwrite any file the server can, print, fork, or loop forever. So a model file is
checked in three steps, and refused with a `ModelFileError` naming the first problem:

1. **The archive** (`check_archive`): a zip of TorchScript code and tensors, of bounded unpacked
   size, whose code defines no `__setstate__` (the one method `torch.jit.load` itself runs).
2. **The graph** (`check_graph`): the inlined graph of `forward` (every submodule, every branch
   of every `if` and loop) may use only the operators in `ALLOWED_OPS`, pure tensor operations
   whose output shapes follow from their input shapes. File, storage, process, printing and
   custom operators are absent from it, and so refused. On top of that: no operator may write
   into a weight or set a module attribute (the loaded model is shared by every session), and
   no `if`, loop count or size may depend on the image's values, only on its shape, the
   constants and the weights. So every image of one shape takes the same path, with the same
   time and memory as the first run.
3. **The first run** (`first_run`): in a separate Python process, with the CPU and wall time and
   the address space limited and file writes forbidden (`RLIMIT_FSIZE = 0`), one forward and
   backward pass on a grey image. A run past a limit is killed and refused with that reason; the
   server's own worker only waits for it.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from engines.models.catalogue import ModelFileError

MAX_UNPACKED_BYTES = 2 * 1024**3
"""Largest total unpacked size of a TorchScript archive (2 GiB), against zip bombs."""

MAX_LOOP_COUNT = 10_000
"""Largest constant trip count of a loop in a model's graph."""


@dataclass(frozen=True)
class RunLimits:
    """Limits of a model's first run: `seconds` of wall (and CPU) time for the pass itself, and
    `memory_bytes` of address space on top of what the Python process with torch already uses."""

    seconds: float = 30.0
    memory_bytes: int = 4 * 1024**3
    startup_seconds: float = 120.0
    """Time allowed for the checking process to start and import torch, before the pass."""


# Pure tensor operations: arithmetic, activations, reductions, shape and layout changes, linear
# layers, convolutions, pooling, normalisation, attention and comparisons. Each one's output
# shape follows from its inputs' shapes; none touches files, processes or other sessions.
# `empty` is left out on purpose: uninitialised memory could show another session's data.
_TENSOR_OPS = """
abs absolute acos acosh adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d
adaptive_max_pool1d adaptive_max_pool2d add addcdiv addcmul addmm alias all amax amin any arange
argmax argmin asin asinh atan atan2 atanh avg_pool1d avg_pool2d avg_pool3d baddbmm batch_norm
bernoulli bitwise_and bitwise_not bitwise_or bitwise_xor bmm broadcast_tensors broadcast_to cat
ceil celu channel_shuffle chunk clamp clamp_max clamp_min clip clone concat concatenate
constant_pad_nd contiguous conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d
_convolution convolution cos cosh cosine_similarity cumprod cumsum detach diag diagonal div divide
dot dropout einsum elu embedding eq erf erfc exp exp2 expand expand_as expm1 eye
feature_dropout flatten flip floor floor_divide fmod frac full full_like gather ge gelu glu
group_norm gt hardshrink hardsigmoid hardswish hardtanh index_select instance_norm
interpolate isfinite isinf isnan layer_norm le leaky_relu lerp lgamma linear linspace log log10
log1p log2 log_sigmoid log_softmax logaddexp logical_and logical_not logical_or logical_xor
logsumexp lt masked_fill matmul max max_pool1d max_pool2d max_pool3d max_pool2d_with_indices
maximum mean median min minimum mish mm movedim mul multiply mv nan_to_num narrow ne neg negative
norm normal ones ones_like pad permute pixel_shuffle pixel_unshuffle pow prelu prod rand
rand_like randn randn_like reciprocal relu relu6 remainder repeat reshape reshape_as roll round
rrelu rsqrt rsub scaled_dot_product_attention select selu sigmoid sign silu sin sinh slice
smooth_l1_loss softmax softplus softshrink split split_with_sizes sqrt square squeeze stack std
sub subtract sum swapaxes t tan tanh tensor_split threshold tile to topk transpose tril triu
true_divide trunc type_as unbind unflatten unsqueeze upsample_bilinear2d upsample_nearest2d
var view view_as where zeros zeros_like _native_multi_head_attention native_layer_norm
native_batch_norm _batch_norm_impl_index layer_norm unfold fold
"""
# Python-level operations TorchScript emits on numbers, lists, strings and optionals.
_SCALAR_OPS = """
Int Float Bool ScalarImplicit IntImplicit FloatImplicit item tensor __and__ __or__ __not__ __is__ __isnot__
__contains__ __getitem__ __range_length __derive_index __interpolate append len list size dim
numel floordiv format str eq ne lt le gt ge neg add sub mul div remainder pow min max abs ceil
floor sqrt is_grad_enabled is_autocast_enabled is_scripting _set_item extend insert copy
"""
_PRIM_OPS = """
Constant GetAttr If Loop ListConstruct ListUnpack TupleConstruct TupleUnpack TupleIndex
DictConstruct NumToTensor Uninitialized RaiseException device dtype is_cuda is_nested layout
requires_grad type unchecked_cast max min abs data shape AutogradZero isinstance dtype
"""
ALLOWED_OPS = frozenset(
    [f"aten::{name}" for name in (_TENSOR_OPS + _SCALAR_OPS).split()]
    + [f"aten::{name}_" for name in _TENSOR_OPS.split()]  # in-place forms, on activations only
    + [f"prim::{name}" for name in _PRIM_OPS.split()]
)
"""Every operator a checked model's graph may use, as `namespace::name`."""

# Operators whose result depends on a tensor's shape, type or device only, not on its values.
_SHAPE_QUERIES = frozenset(
    ["aten::size", "aten::dim", "aten::numel", "aten::len", "prim::device", "prim::dtype",
     "prim::is_cuda", "prim::is_nested", "prim::layout", "prim::requires_grad", "prim::shape",
     "aten::__is__", "aten::__isnot__", "aten::is_grad_enabled", "aten::is_autocast_enabled"]
)
# Operators that read a number out of a tensor: refused where that tensor depends on the image.
_READS_NUMBER = frozenset(
    ["aten::Int", "aten::Float", "aten::Bool", "aten::ScalarImplicit", "aten::IntImplicit",
     "aten::FloatImplicit", "aten::item", "aten::tolist"]
)

_WHY = {
    "aten::from_file": "it maps a file on the server into a tensor",
    "aten::save": "it writes a file",
    "aten::load": "it reads a file",
    "prim::Print": "it prints on the server",
    "aten::warn": "it writes to the server's log",
    "prim::fork": "it starts parallel work",
    "aten::wait": "it waits on parallel work",
    "prim::SetAttr": "it changes the model's own state, which every session shares",
    "prim::CallMethod": "it calls a method that could not be inlined and checked",
    "prim::CallFunction": "it calls a function that could not be inlined and checked",
    "prim::PythonOp": "it calls Python code",
    "aten::set_": "it swaps a tensor's storage",
    "aten::untyped_storage": "it exposes raw storage",
    "aten::nonzero": "its output size depends on the image's values",
    "aten::masked_select": "its output size depends on the image's values",
    "aten::unique": "its output size depends on the image's values",
    "aten::repeat_interleave": "its output size can depend on tensor values",
}


def _refuse(kind: str, why: str, node: torch._C.Node) -> ModelFileError:
    # The node's source location is left out: it is text from the file, chosen by its author.
    return ModelFileError(
        f"The model was refused before running: it uses {kind}: {why}. Only pure tensor "
        "operations are allowed in an uploaded TorchScript model; export the plain network "
        "(torch.jit.trace or torch.jit.script of its forward), or upload its weights as a "
        "safetensors file for a catalogue architecture."
    )


def check_archive(data: bytes) -> None:
    """Refuses bytes that are not a TorchScript zip archive, that unpack to more than
    `MAX_UNPACKED_BYTES`, or whose code defines `__setstate__` (run by `torch.jit.load` itself)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ModelFileError(
            "This file is not a TorchScript model (not a zip archive). Export yours with "
            "torch.jit.save(torch.jit.script(model), 'model.pt') (or torch.jit.trace); pickled models "
            "are refused because loading them can run arbitrary code."
        ) from None
    if sum(e.file_size for e in entries) > MAX_UNPACKED_BYTES:
        raise ModelFileError(
            f"The model archive unpacks to more than {MAX_UNPACKED_BYTES >> 30} GB; it was refused unread."
        )
    code = [e for e in entries if "/code/" in e.filename and e.filename.endswith(".py")]
    if not code:
        raise ModelFileError(
            "This zip file holds no TorchScript code (a torch.save checkpoint is not a TorchScript "
            "model). Export with torch.jit.save(torch.jit.script(model), 'model.pt')."
        )
    for entry in code:
        if entry.file_size > 64 * 1024**2:
            raise ModelFileError(f"The model's code file {entry.filename} is over 64 MB; it was refused unread.")
        if b"__setstate__" in archive.read(entry):
            raise ModelFileError(
                "The model was refused before loading: its code defines __setstate__, which "
                "torch.jit.load would run while loading. Export the plain network without custom "
                "state methods."
            )


def check_graph(module: torch.jit.ScriptModule) -> None:
    """Refuses a model whose inlined `forward` graph uses an operator outside `ALLOWED_OPS`,
    writes into a module attribute, sets one, or lets control flow, loop counts or sizes depend on
    the image's values (see the module's docstring). The first problem found is named."""
    try:
        graph = module.inlined_graph
    except Exception as error:  # a module with no scripted forward
        raise ModelFileError(f"The model has no TorchScript forward method to check ({error}).") from None
    inputs = list(graph.inputs())
    walk = _Walk(module, inputs[0].unique(), {v.unique() for v in inputs[1:]})
    walk.block(graph)


class _Walk:
    """One pass over a graph: `tainted` holds the values that depend on the image's values,
    `attributes` those that are (views of) the module's own tensors, `known` the Python values of
    module attributes and constants, so branches on them (`if self.training`) are followed only
    the way the frozen, eval-mode model takes them."""

    def __init__(self, module, self_value: int, tainted: set[int]):
        self.tainted = tainted
        self.attributes: set[int] = set()
        self.known: dict[int, object] = {self_value: module}

    def block(self, block) -> None:
        for node in block.nodes():
            _check_node(node, self)

    def fold(self, node, kind: str, ins, outs) -> None:
        """Records the Python value of a constant, a module attribute or logic on known values."""
        try:
            if kind == "prim::Constant" and outs[0].type().kind() in ("BoolType", "IntType", "NoneType"):
                self.known[outs[0].unique()] = outs[0].toIValue()
            elif kind == "prim::GetAttr" and ins[0].unique() in self.known:
                name = node.s("name")
                owner = self.known[ins[0].unique()]
                self.known[outs[0].unique()] = False if name == "training" else getattr(owner, name)
            elif kind in ("aten::__not__", "aten::__and__", "aten::__or__", "aten::__is__", "aten::__isnot__") and all(
                v.unique() in self.known for v in ins
            ):
                values = [self.known[v.unique()] for v in ins]
                self.known[outs[0].unique()] = {
                    "aten::__not__": lambda: not values[0], "aten::__and__": lambda: values[0] and values[1],
                    "aten::__or__": lambda: values[0] or values[1], "aten::__is__": lambda: values[0] is values[1],
                    "aten::__isnot__": lambda: values[0] is not values[1],
                }[kind]()
        except Exception:  # a value that cannot be read is simply not known
            pass


def _check_node(node, walk: "_Walk") -> None:
    tainted, attributes = walk.tainted, walk.attributes
    kind = node.kind()
    ins = list(node.inputs())
    outs = list(node.outputs())
    if kind not in ALLOWED_OPS:
        namespace = kind.split("::")[0]
        why = _WHY.get(kind) or (
            "it is a custom operator from an extension" if namespace not in ("aten", "prim")
            else "it is not on the list of pure tensor operations"
        )
        raise _refuse(kind, why, node)
    walk.fold(node, kind, ins, outs)
    if kind == "prim::GetAttr":
        attributes.update(v.unique() for v in outs)
        return
    _check_writes(node, kind, ins, attributes)
    in_tainted = any(v.unique() in tainted for v in ins)
    if kind in _READS_NUMBER and in_tainted:
        raise _refuse(kind, "it reads a number out of the image's values, so sizes or loop counts "
                      "could depend on the image", node)
    if kind == "prim::If":
        if ins[0].unique() in tainted:
            raise _refuse("an if-branch", "its condition depends on the image's values, so one "
                          "image could take a path the first run never checked", node)
        blocks = list(node.blocks())
        if isinstance(walk.known.get(ins[0].unique()), bool):  # the frozen model takes one way only
            blocks = [blocks[0] if walk.known[ins[0].unique()] else blocks[1]]
        for sub in blocks:
            walk.block(sub)
        for i, out in enumerate(outs):
            if any(list(sub.outputs())[i].unique() in tainted for sub in blocks):
                tainted.add(out.unique())
            if len(blocks) == 1 and list(blocks[0].outputs())[i].unique() in walk.known:
                walk.known[out.unique()] = walk.known[list(blocks[0].outputs())[i].unique()]
        return
    if kind == "prim::Loop":
        _check_loop(node, ins, outs, walk)
        return
    if kind in _SHAPE_QUERIES:
        return
    if in_tainted:
        tainted.update(v.unique() for v in outs)
        if kind in ("aten::append", "aten::extend", "aten::insert", "aten::_set_item"):
            tainted.add(ins[0].unique())  # the list itself now holds image data
    if any(v.unique() in attributes for v in ins) and _returns_alias(node):
        attributes.update(v.unique() for v in outs)  # a view of a weight is still the weight


def _check_loop(node, ins, outs, walk: "_Walk") -> None:
    tainted, attributes = walk.tainted, walk.attributes
    trip, condition = ins[0], ins[1]
    if trip.unique() in tainted or condition.unique() in tainted:
        raise _refuse("a loop", "its count or condition depends on the image's values", node)
    producer = trip.node()
    if producer.kind() == "prim::Constant":
        count = trip.toIValue()
        if count > MAX_LOOP_COUNT:
            raise _refuse("a while-loop" if count >= 2**62 else "a loop",
                          f"it may run {count} times (at most {MAX_LOOP_COUNT} are allowed); a loop "
                          "must run a fixed number of times, as `for i in range(n)` does", node)
    body = next(iter(node.blocks()))
    params = list(body.inputs())  # (iteration, *carried)
    carried_in = ins[2:]
    for param, given in zip(params[1:], carried_in):
        if given.unique() in tainted:
            tainted.add(param.unique())
        if given.unique() in attributes:
            attributes.add(param.unique())
    for _ in range(3):  # loop-carried values: taint flows around the loop until nothing changes
        before = len(tainted)
        walk.block(body)
        body_outs = list(body.outputs())  # (condition, *carried)
        if body_outs and body_outs[0].unique() in tainted:
            raise _refuse("a loop", "its condition depends on the image's values", node)
        for param, out_value, result in zip(params[1:], body_outs[1:], outs):
            if out_value.unique() in tainted:
                tainted.update((param.unique(), result.unique()))
        if len(tainted) == before:
            break


def _schema(node):
    try:
        return torch._C.parse_schema(node.schema())
    except Exception:
        return None


def _returns_alias(node) -> bool:
    schema = _schema(node)
    return schema is not None and any(r.alias_info is not None for r in schema.returns)


def _check_writes(node, kind: str, ins, attributes: set[int]) -> None:
    """Refuses an operator that writes into a module attribute (a weight or buffer), in place."""
    if not any(v.unique() in attributes for v in ins):
        return
    schema = _schema(node)
    if schema is None:
        return
    for argument, value in zip(schema.arguments, ins):
        info = argument.alias_info
        if info is not None and info.is_write and value.unique() in attributes:
            raise _refuse(kind, "it writes into the model's own weights or buffers in place, which every "
                          "session shares", node)


# --------------------------------------------------------------------------- the first run

_CHILD = Path(__file__).with_name("first_run.py")


def first_run(data: bytes, input_size: int, mean: tuple, std: tuple, limits: RunLimits = RunLimits()) -> dict:
    """Runs the model once (forward and backward on a grey `(1, 3, S, S)` image) in a separate
    process under `limits`; returns `{"shape": [...], "finite": bool, "seconds": float}`.

    Raises ModelFileError when the run takes too long, needs too much memory, crashes or fails.
    The server's worker waits at most `limits.startup_seconds + limits.seconds` (plus a second).
    """
    request = json.dumps({"input_size": int(input_size), "mean": list(mean), "std": list(std),
                          "seconds": float(limits.seconds), "memory_bytes": int(limits.memory_bytes)})
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "HOME": os.environ.get("HOME", "/tmp")}
    try:
        done = subprocess.run(
            [sys.executable, "-I", str(_CHILD), request], input=data, capture_output=True, env=env,
            timeout=limits.startup_seconds + limits.seconds + 1, cwd="/", check=False,
        )
    except subprocess.TimeoutExpired:
        raise _too_slow(limits) from None
    lines = done.stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        report = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        report = {}
    if done.returncode != 0 or "error" in report or "shape" not in report:
        raise _failed(done.returncode, report, limits, input_size)
    return report


def _plain(text: str) -> str:
    """Text from the model's own error, stripped of what a page would render as links or markup."""
    return "".join(c for c in text if c.isprintable() and c not in "[]<>`*_|#")


def _too_slow(limits: RunLimits) -> ModelFileError:
    return ModelFileError(
        f"The model was refused: its first run on one image took longer than the {limits.seconds:g} s "
        "limit and was stopped. A model that slow on one image cannot be explained here (maps need "
        "hundreds of passes)."
    )


def _failed(code: int, report: dict, limits: RunLimits, input_size: int) -> ModelFileError:
    import signal

    error = _plain(str(report.get("error", "")))[:80]
    message = _plain(str(report.get("message", "")))[:300]
    if report.get("timeout") or code in (-signal.SIGALRM, -signal.SIGXCPU):
        return _too_slow(limits)
    if report.get("memory") or code == -signal.SIGKILL:
        return ModelFileError(
            f"The model was refused: its first run on one image needed more than the "
            f"{limits.memory_bytes / 1024**3:.3g} GB memory limit and was stopped."
        )
    if code == -signal.SIGXFSZ:
        return ModelFileError("The model was refused: its first run tried to write a file.")
    if error:
        return ModelFileError(
            f"The model failed on a (1, 3, {input_size}, {input_size}) image: {error}: {message}. "
            "Check the input size."
        )
    return ModelFileError(f"The model's first run crashed (exit status {code}); it was refused.")
