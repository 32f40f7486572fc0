"""The attack view: a model's eval-mode function with BatchNorm folded into its convolutions.

In eval mode a BatchNorm is an affine map, so folding it into the preceding convolution computes
the same function (up to float rounding) with one layer less forward and backward: what attacks
evaluate 40 to 50 times per batch. The view also swaps in the fused kernels of `kernels.py`
and runs convolutions whose kernel covers their input as matrix products.
"""

from __future__ import annotations

import copy
import weakref

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from robustal.accel.kernels import fuse_conv_relu_pool


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
    each Conv2d -> ReLU -> MaxPool2d(2) chain is one fused CPU kernel
    (`robustal.accel.kernels`), and every convolution without padding runs as a matrix product on
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


# what torch.fx raises for Python it cannot trace symbolically (`if tensor:` -> TraceError,
# ``len(proxy)`` -> RuntimeError, ``range(proxy)`` -> TypeError, unsupported ops -> NotImplementedError)
UNTRACEABLE = (fx.proxy.TraceError, RuntimeError, TypeError, NotImplementedError)
_FOLDED_VIEWS: weakref.WeakKeyDictionary[nn.Module, _FoldedBatchNorm | None] = weakref.WeakKeyDictionary()


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """The eval-mode function of `model` with each Conv2d -> BatchNorm2d pair folded into one Conv2d.

    In eval mode a BatchNorm is an affine map, so folding it into the preceding convolution
    computes the same function (up to float rounding) with one layer less forward and
    backward: what attacks evaluate 40 to 50 times per batch. The view also runs stride-1
    Conv2d -> ReLU -> MaxPool2d(2) chains as fused CPU kernels (`robustal.accel.kernels`) and
    convolutions whose kernel covers their input as matrix products. The traced structure is built
    once per model (torch.fx) and cached; the folded weights are recomputed from the live
    parameters on every call, in place. Models that torch.fx cannot trace, or without such pairs, are
    returned unchanged. The view shares every other module with `model` (and so their mode):
    use it with `model` in eval mode, and not after replacing submodules of `model`.
    """
    if model not in _FOLDED_VIEWS:
        try:
            traced = fx.symbolic_trace(model)
        except UNTRACEABLE:  # data-dependent control flow, len() or range() of a traced value: no folding
            traced = None
        # only tracing may fail quietly: an error while rewriting the traced graph is a bug and surfaces
        view = _FoldedBatchNorm(traced) if traced is not None else None
        _FOLDED_VIEWS[model] = view if view is not None and view.pairs else None
    view = _FOLDED_VIEWS[model]
    return model if view is None else view.current()


