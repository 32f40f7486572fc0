"""Fused CPU kernels for attacks: a one-channel convolution, ReLU and 2x2 max pooling in one pass.

LeNet-5's first block (Conv2d(1 -> 6, 5x5) -> ReLU -> MaxPool2d(2)) takes most of a PGD step on
a CPU: oneDNN runs a convolution with one input channel far below peak (its input gradient costs
3.5x its forward) and ATen's pooling costs as much again. Here the block is two numba kernels:

- forward: the convolution, bias, ReLU and pooling per image and channel, keeping the pooled
  value and which of the four window positions it came from;
- input gradient: each pooled gradient goes back through its one winning position only (the
  other three, and windows the ReLU zeroed, get none), so it costs a quarter of a convolution's.

Both compute in float32 and match ATen's semantics (the first maximum of a window wins, no
gradient through a ReLU at zero), so results agree with the unfused block up to float rounding.
Attacks use them through the attack view (`robustal.accel.folding`), on CPU inputs, where numba is
installed; elsewhere `FusedConvReluPool` runs the three layers as they are.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn

try:
    import numba
except ImportError:  # the fused path is an optimisation: without numba, layers stay unfused
    numba = None


if numba is not None:

    @numba.njit(parallel=True)
    def _block_forward(x, weight, bias, pooled, winner):  # pragma: no cover - compiled by numba
        """x (B, H, W); weight (C, K, K); bias (C); pooled, winner (B, H', W', C), written."""
        images, height, width = x.shape
        channels, size, _ = weight.shape
        rows, cols = height - size + 1, width - size + 1
        for n in numba.prange(images):
            conv = np.empty((rows, cols), dtype=np.float32)
            for c in range(channels):
                conv[:, :] = bias[c]
                for ki in range(size):
                    for kj in range(size):
                        w = weight[c, ki, kj]
                        for i in range(rows):
                            for j in range(cols):
                                conv[i, j] += x[n, i + ki, j + kj] * w
                for p in range(rows // 2):
                    for q in range(cols // 2):
                        best, position = conv[2 * p, 2 * q], 0
                        for k in range(1, 4):  # window order (0,0) (0,1) (1,0) (1,1): first maximum wins
                            value = conv[2 * p + k // 2, 2 * q + k % 2]
                            if value > best:
                                best, position = value, k
                        pooled[n, p, q, c] = best if best > 0 else 0.0
                        winner[n, p, q, c] = position

    @numba.njit(parallel=True)
    def _block_input_gradient(gradient, pooled, winner, weight, x_gradient):  # pragma: no cover
        """gradient, pooled, winner (B, H', W', C); weight (C, K, K); x_gradient (B, H, W), zeroed."""
        images, rows, cols, channels = gradient.shape
        size = weight.shape[1]
        for n in numba.prange(images):
            for p in range(rows):
                for q in range(cols):
                    for c in range(channels):
                        g = gradient[n, p, q, c]
                        if g == 0 or pooled[n, p, q, c] <= 0:
                            continue
                        i = 2 * p + winner[n, p, q, c] // 2
                        j = 2 * q + winner[n, p, q, c] % 2
                        for ki in range(size):
                            for kj in range(size):
                                x_gradient[n, i + ki, j + kj] += g * weight[c, ki, kj]


@contextlib.contextmanager
def _torch_threads() -> Iterator[None]:
    """Run numba with torch's thread count, and leave torch's as it was: numba's OpenMP layer
    shares the OpenMP runtime and, when it starts, sets that runtime's count to every core."""
    threads = torch.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


class _ConvReluPool(torch.autograd.Function):
    """The fused block on a (B, 1, H, W) float32 CPU input, differentiable with respect to it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        images, _, height, width = x.shape
        channels, size = weight.shape[0], weight.shape[-1]
        rows, cols = (height - size + 1) // 2, (width - size + 1) // 2
        kernel = weight.detach().float().reshape(channels, size, size).contiguous()
        pooled = torch.empty(images, rows, cols, channels)
        winner = torch.empty(images, rows, cols, channels, dtype=torch.uint8)
        with _torch_threads():
            _block_forward(
                x.detach().reshape(images, height, width).contiguous().numpy(),
                kernel.numpy(),
                bias.detach().float().contiguous().numpy(),
                pooled.numpy(),
                winner.numpy(),
            )
        ctx.save_for_backward(pooled, winner, kernel)
        ctx.input_shape = x.shape
        return pooled.permute(0, 3, 1, 2)  # (B, C, H', W') in channels-last memory

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        pooled, winner, kernel = ctx.saved_tensors
        images, _, height, width = ctx.input_shape
        x_gradient = torch.zeros(images, height, width)
        with _torch_threads():
            _block_input_gradient(
                gradient.permute(0, 2, 3, 1).float().contiguous().numpy(),
                pooled.numpy(),
                winner.numpy(),
                kernel.numpy(),
                x_gradient.numpy(),
            )
        return x_gradient.view(ctx.input_shape), None, None


class FusedConvReluPool(nn.Module):
    """``max_pool2d(relu(conv(x)), 2)`` for a one-input-channel `conv`: the fused kernels on
    float32 CPU inputs when only the input needs a gradient (what attacks ask), the three layers
    otherwise. Under bf16 autocast the fused block still computes in float32."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        weights_need_gradients = torch.is_grad_enabled() and conv.weight.requires_grad
        float32_cpu = x.device.type == "cpu" and x.dtype == conv.weight.dtype == torch.float32
        if not float32_cpu or weights_need_gradients:
            return F.max_pool2d(F.relu(conv(x)), 2)
        bias = conv.bias if conv.bias is not None else conv.weight.new_zeros(conv.out_channels)
        if conv.padding != (0, 0):
            x = F.pad(x, [conv.padding[1]] * 2 + [conv.padding[0]] * 2)
        return _ConvReluPool.apply(x, conv.weight, bias)


def _fusable_conv(module: nn.Module | None) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and module.in_channels == 1
        and module.kernel_size[0] == module.kernel_size[1]
        and module.stride == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and isinstance(module.padding, tuple)
        and module.padding_mode == "zeros"
    )


def _pools_2x2(module: nn.Module | None) -> bool:
    def pair(value):
        return value if isinstance(value, tuple) else (value, value)

    return (
        isinstance(module, nn.MaxPool2d)
        and pair(module.kernel_size) == (2, 2)
        and pair(module.stride or module.kernel_size) == (2, 2)
        and pair(module.padding) == (0, 0)
        and pair(module.dilation) == (1, 1)
        and not module.ceil_mode
        and not module.return_indices
    )


def fuse_conv_relu_pool(module: fx.GraphModule) -> int:
    """Replace each Conv2d(1 -> C) -> ReLU -> MaxPool2d(2) chain of modules in `module`'s graph
    (each output used only by the next) with one `FusedConvReluPool`; return how many. Changes
    nothing without numba. The containers changed are the traced copy's own (torch.fx copies the
    module tree down to its leaves), so the model traced stays as it is."""
    if numba is None:
        return 0
    modules = dict(module.named_modules())
    fused = 0
    for pool in list(module.graph.nodes):
        if pool.op != "call_module" or not _pools_2x2(modules.get(pool.target)):
            continue
        relu = pool.args[0]
        if not (isinstance(relu, fx.Node) and relu.op == "call_module" and len(relu.users) == 1):
            continue
        conv = relu.args[0]
        if not (isinstance(modules.get(relu.target), nn.ReLU) and isinstance(conv, fx.Node)):
            continue
        if conv.op != "call_module" or len(conv.users) != 1 or not _fusable_conv(modules.get(conv.target)):
            continue
        module.set_submodule(conv.target, FusedConvReluPool(modules[conv.target]))
        pool.replace_all_uses_with(conv)
        module.graph.erase_node(pool)
        module.graph.erase_node(relu)
        fused += 1
    if fused:
        module.delete_all_unused_submodules()
        module.recompile()
    return fused
