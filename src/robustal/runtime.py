"""Small torch helpers shared by every layer: device choice, model modes, batching, and the
speed settings (precision, memory format, compilation) in one place."""

from __future__ import annotations

import contextlib
import copy
import weakref
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from robustal.errors import ConfigError, unknown_name_error
from robustal.kernels import fuse_conv_relu_pool


def select_device(name: str = "auto") -> torch.device:
    """The torch device for `name`: ``auto`` picks CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"invalid device {name!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use --device cpu or auto")
    return device


@contextlib.contextmanager
def model_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put `model` in train (`training=True`) or eval mode, restoring its previous mode on exit."""
    was_training = model.training
    model.train(training)
    try:
        yield model
    finally:
        model.train(was_training)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images in [0, 255] -> float32 in [0, 1]; float input is returned as float32."""
    if images.dtype == torch.uint8:
        return images.float().div_(255.0)
    return images.float()


PRECISIONS = ("fp32", "bf16")


def check_precision(precision: str) -> str:
    """`precision` if it is one of `PRECISIONS`, else a `ConfigError` listing them."""
    if precision not in PRECISIONS:
        raise unknown_name_error("precision", precision, PRECISIONS)
    return precision


def autocast(device: torch.device | str, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """The context in which forward passes run at `precision`, on CPU and CUDA alike.

    ``fp32``: nothing changes. ``bf16``: `torch.autocast` with bfloat16, so convolutions and
    matrix products run in bf16 (AMX / AVX-512-BF16 on CPUs that have them, tensor cores on
    GPUs) while the weights stay float32 (master weights) and reductions autocast keeps in
    float32 stay there. Callers compute losses from ``logits.float()`` and run backward passes
    after leaving the context.
    """
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)


def prepare_model(model: nn.Module, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """`model` (changed in place) in the channels-last memory format and/or compiled.

    ``channels_last`` stores 4-d weights as NHWC, which oneDNN (CPU) and cuDNN (GPU) convolve
    faster; inputs need no conversion. ``compile`` wraps the forward in `torch.compile`
    (``nn.Module.compile``: parameter names and the state dict are unchanged). Both change
    results only at floating-point rounding level; benchmarks/README.md reports when they pay.
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        model.compile()
    return model


def _normalises_a_conv(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether `node` applies a BatchNorm2d with running statistics to the output of a Conv2d
    that nothing else uses (the pattern that folds into one convolution)."""
    if node.op != "call_module" or not isinstance(modules[node.target], nn.BatchNorm2d) or not node.args:
        return False
    source = node.args[0]
    return (
        isinstance(source, fx.Node)
        and source.op == "call_module"
        and isinstance(modules[source.target], nn.Conv2d)
        and len(source.users) == 1
        and modules[node.target].track_running_stats
    )


class _WholeInputConv(nn.Module):
    """A Conv2d that, on an input exactly the size of its kernel (LeNet-5's last convolution),
    runs as one matrix product: the same function, and on CPUs about 10 % of a bf16 LeNet-5
    attack step faster than the convolution kernel (benchmarks/README.md)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    @staticmethod
    def applies_to(layer: nn.Module | None) -> bool:
        return (
            isinstance(layer, nn.Conv2d)
            and layer.padding in ((0, 0), "valid")
            and layer.dilation == (1, 1)
            and layer.groups == 1
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        if tuple(x.shape[-2:]) != conv.kernel_size:
            return conv(x)
        if x.is_contiguous():
            inputs, weight = x.flatten(1), conv.weight.flatten(1)
        else:  # channels last: flatten both in (height, width, channel) order, a view of x
            inputs, weight = x.permute(0, 2, 3, 1).flatten(1), conv.weight.permute(0, 2, 3, 1).flatten(1)
        return F.linear(inputs, weight, conv.bias)[:, :, None, None]


class _FoldedBatchNorm:
    """A traced copy of a model's forward in which every Conv2d -> BatchNorm2d pair is one Conv2d,
    each one-channel Conv2d -> ReLU -> MaxPool2d(2) chain is one fused CPU kernel
    (`robustal.kernels`), and every convolution without padding runs as a matrix product on
    inputs the size of its kernel (`_WholeInputConv`).

    The copy shares every other module with the model; the folded convolutions are refreshed
    from the live convolution and BatchNorm (running statistics and affine parameters) on
    every `current()` call, so the view always computes the model's present eval-mode function.
    """

    def __init__(self, traced: fx.GraphModule) -> None:
        self.module = traced  # leaves are the model's own modules
        modules = dict(self.module.named_modules())
        self.pairs: list[tuple[nn.Conv2d, nn.Conv2d, nn.BatchNorm2d]] = []
        for node in list(self.module.graph.nodes):
            if not _normalises_a_conv(node, modules):
                continue
            source = node.args[0]
            conv, norm = modules[source.target], modules[node.target]
            folded = copy.deepcopy(conv).requires_grad_(False)  # its weights are refreshed by `current()`
            self.module.set_submodule(source.target, folded)  # in a container of the copy only
            self.pairs.append((folded, conv, norm))
            node.replace_all_uses_with(source)
            self.module.graph.erase_node(node)
        fuse_conv_relu_pool(self.module)
        for node in self.module.graph.nodes:
            layer = self.module.get_submodule(node.target) if node.op == "call_module" else None
            if _WholeInputConv.applies_to(layer):
                self.module.set_submodule(node.target, _WholeInputConv(layer))
        self.module.delete_all_unused_submodules()
        self.module.recompile()

    def current(self) -> nn.Module:
        with torch.no_grad():
            for folded, conv, norm in self.pairs:
                weight, bias = fuse_conv_bn_weights(
                    conv.weight, conv.bias, norm.running_mean, norm.running_var, norm.eps, norm.weight, norm.bias
                )
                _refresh(folded, "weight", weight)
                _refresh(folded, "bias", bias)
        return self.module


def _refresh(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Set parameter `name` of `module` to `value`, in place where the layout allows it: a CUDA
    graph captured on the module keeps reading the same memory (`CapturedCall`)."""
    current = getattr(module, name)
    same_layout = (
        current is not None
        and current.shape == value.shape
        and current.stride() == value.stride()
        and current.dtype == value.dtype
        and current.device == value.device
    )
    if same_layout:
        current.copy_(value)
    else:  # first refresh of a bias-free convolution, or the model moved to another device / format
        setattr(module, name, nn.Parameter(value, requires_grad=False))


_FOLDED_VIEWS: weakref.WeakKeyDictionary[nn.Module, _FoldedBatchNorm | None] = weakref.WeakKeyDictionary()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """The eval-mode function of `model` with each Conv2d -> BatchNorm2d pair folded into one Conv2d.

    In eval mode a BatchNorm is an affine map, so folding it into the preceding convolution
    computes the same function (up to float rounding) with one layer less forward and
    backward: what attacks evaluate 40 to 50 times per batch. The view also runs one-channel
    Conv2d -> ReLU -> MaxPool2d(2) chains as fused CPU kernels (`robustal.kernels`) and
    convolutions whose kernel covers their input as matrix products. The traced structure is built
    once per model (torch.fx) and cached; the folded weights are recomputed from the live
    parameters on every call, in place. Models that torch.fx cannot trace, or without such pairs, are
    returned unchanged. The view shares every other module with `model` (and so their mode):
    use it with `model` in eval mode, and not after replacing submodules of `model`.
    """
    if model not in _FOLDED_VIEWS:
        try:
            traced = fx.symbolic_trace(model)
        except Exception:  # noqa: BLE001 - torch.fx cannot trace it (data-dependent control flow...): no folding
            traced = None
        # only tracing may fail quietly: an error while rewriting the traced graph is a bug and surfaces
        view = _FoldedBatchNorm(traced) if traced is not None else None
        _FOLDED_VIEWS[model] = view if view is not None and view.pairs else None
    view = _FOLDED_VIEWS[model]
    return model if view is None else view.current()


CUDA_GRAPH_WARMUP = 3  # eager runs on a side stream before capture (lazy cuBLAS / cuDNN set-up)
MAX_GRAPHS_PER_MODULE = 8  # input signatures captured per module; further ones run eagerly


class CapturedCall:
    """`fn(*inputs)` captured once as a CUDA graph, then replayed on new inputs of the same shapes.

    A replay launches the whole recorded kernel sequence at once: for small models at small
    batches (LeNet-5, batch 100) a GPU otherwise waits on Python and kernel launches. `fn` must
    run on CUDA tensors only, never synchronise with the host, and read every other tensor
    (parameters, BatchNorm statistics, folded weights) from memory that is updated in place,
    as optimizers and `load_state_dict` do. Autocast, if on, applies without its weight cache
    (cached casts would be freed after capture); the graph keeps the precision it was captured in.
    """

    def __init__(self, fn: Callable[..., torch.Tensor], inputs: tuple[torch.Tensor, ...]) -> None:
        self.inputs = tuple(t.detach().clone() for t in inputs)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), _autocast_without_cache():
            for _ in range(CUDA_GRAPH_WARMUP):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), _autocast_without_cache():
            self.output = fn(*self.inputs)

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        for static, value in zip(self.inputs, inputs):
            static.copy_(value)
        self.graph.replay()
        return self.output.clone()


def _autocast_state() -> tuple[bool, torch.dtype]:
    return torch.is_autocast_enabled("cuda"), torch.get_autocast_dtype("cuda")


def _autocast_without_cache() -> contextlib.AbstractContextManager:
    enabled, dtype = _autocast_state()
    return torch.autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=False)


_CAPTURED: weakref.WeakKeyDictionary[nn.Module, dict[tuple, CapturedCall]] = weakref.WeakKeyDictionary()


def replay_captured(module: nn.Module, key: tuple, fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> torch.Tensor:
    """`fn(*inputs)` (a computation with `module`) through a CUDA graph (`CapturedCall`).

    One graph per `module`, `key` (what `fn` computes), autocast state and input shapes, dtypes
    and devices, captured at its first call; graphs go with `module`. Beyond
    `MAX_GRAPHS_PER_MODULE` signatures, `fn` runs eagerly. The result is a fresh tensor equal
    to what `fn(*inputs)` returns, up to kernel-level nondeterminism.
    """
    graphs = _CAPTURED.setdefault(module, {})
    signature = (key, _autocast_state(), tuple((t.shape, t.dtype, t.device) for t in inputs))
    captured = graphs.get(signature)
    if captured is None:
        if len(graphs) >= MAX_GRAPHS_PER_MODULE:
            return fn(*inputs)
        try:
            captured = graphs[signature] = CapturedCall(fn, inputs)
        except RuntimeError as error:
            raise RuntimeError(
                f"could not capture {type(module).__name__} in a CUDA graph ({error}); "
                "run without cuda_graphs (--cuda-graphs)"
            ) from error
    return captured(*inputs)


def batch_slices(total: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of at most `batch_size` covering ``range(total)``."""
    if batch_size <= 0:
        raise ConfigError(f"batch size must be positive, got {batch_size}")
    for start in range(0, total, batch_size):
        yield slice(start, min(start + batch_size, total))
