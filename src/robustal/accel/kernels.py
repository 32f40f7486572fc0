"""Fused CPU kernels for attacks: a convolution, ReLU and 2x2 max pooling as one block.

LeNet-style blocks (Conv2d -> ReLU -> MaxPool2d(2)) take most of a PGD step on a CPU: ATen's
pooling and its backward cost as much as the convolution, and oneDNN computes the convolution's
input gradient densely although the pooling passes gradient to one position in four. Here:

- forward: oneDNN's convolution, then one numba pass for ReLU and pooling that keeps the pooled
  value and which of the four window positions it came from;
- input gradient: each pooled gradient goes back through its one winning position only (the
  other three, and windows the ReLU zeroed, get none), so it costs a quarter of a convolution's.
  With several input channels the kernel adds a contiguous run of `kernel size x input channels`
  weights per kernel row (channels-last), which vectorises; with one input channel (a first
  layer, kernels up to 8 wide) each kernel row is one vector of 8, zero-padded.

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
    def _relu_pool_forward(conv, pooled, winner):  # pragma: no cover - compiled by numba
        """conv (B, H, W, C); pooled, winner (B, H // 2, W // 2, C), written."""
        images, height, width, channels = conv.shape
        for n in numba.prange(images):
            for p in range(height // 2):
                for q in range(width // 2):
                    for c in range(channels):
                        best, position = conv[n, 2 * p, 2 * q, c], 0
                        for k in range(1, 4):  # window order (0,0) (0,1) (1,0) (1,1): first maximum wins
                            value = conv[n, 2 * p + k // 2, 2 * q + k % 2, c]
                            if value > best:
                                best, position = value, k
                        pooled[n, p, q, c] = best if best > 0 else 0.0
                        winner[n, p, q, c] = position

    _U = np.uint64  # unsigned indices: numba then skips its negative-index check, and LLVM vectorises
    LANES = 8  # one AVX2 vector of float32: a first layer's kernel rows are zero-padded to it

    @numba.njit(parallel=True)
    def _one_channel_input_gradient(gradient, pooled, winner, weight, x_gradient):  # pragma: no cover
        """gradient, pooled, winner (B, H', W', C); weight (C, K, LANES), kernel rows zero-padded;
        x_gradient (B, H, W), written."""
        images, rows, cols, channels = gradient.shape
        height, width = x_gradient.shape[1], x_gradient.shape[2]
        taps, lanes = _U(weight.shape[1]), _U(LANES)
        row_length = _U(width + LANES)  # room for the padded tail of a row's last kernel position
        for n in numba.prange(images):
            image = np.zeros(height * (width + LANES), dtype=np.float32)  # fresh: provably unaliased
            for p in range(rows):
                for q in range(cols):
                    for c in range(channels):
                        g = gradient[n, p, q, c]
                        if g == 0 or pooled[n, p, q, c] <= 0:
                            continue
                        k = _U(winner[n, p, q, c])
                        i, j = _U(2 * p) + k // _U(2), _U(2 * q) + k % _U(2)
                        for ki in range(taps):
                            target = (i + ki) * row_length + j
                            for t in range(lanes):  # one vector: the padding adds g * 0
                                image[target + t] += g * weight[c, ki, t]
            x_gradient[n] = image.reshape(height, width + LANES)[:, :width]

    @numba.njit(parallel=True)
    def _input_gradient(gradient, pooled, winner, weight, x_gradient, height, size, in_channels):  # pragma: no cover
        """gradient, pooled, winner (B, H', W', C); weight (C * K * K * Cin,) as (C, K, K, Cin);
        x_gradient (B, H * W * Cin) as (B, H, W, Cin), written."""
        images, rows, cols, channels = gradient.shape
        image_length = x_gradient.shape[1]
        row_length = _U(image_length // height)
        span = _U(size * in_channels)  # one kernel row of every input channel: contiguous in both
        depth, taps = _U(in_channels), _U(size)
        for n in numba.prange(images):
            image = np.zeros(image_length, dtype=np.float32)  # a fresh array: provably unaliased
            for p in range(rows):
                for q in range(cols):
                    for o in range(channels):
                        g = gradient[n, p, q, o]
                        if g == 0 or pooled[n, p, q, o] <= 0:
                            continue
                        k = _U(winner[n, p, q, o])
                        i, j = _U(2 * p) + k // _U(2), _U(2 * q) + k % _U(2)
                        for ki in range(taps):
                            target = (i + ki) * row_length + j * depth
                            source = (_U(o) * taps + ki) * span
                            for t in range(span):
                                image[target + t] += g * weight[source + t]
            x_gradient[n, :] = image


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
    """The fused block on a (B, Cin, H, W) float32 CPU input, differentiable with respect to it."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", enabled=False):
            conv = F.conv2d(x.detach(), weight.detach().float(), bias.detach().float())
        images, channels, height, width = conv.shape
        pooled = torch.empty(images, height // 2, width // 2, channels)
        winner = torch.empty(images, height // 2, width // 2, channels, dtype=torch.uint8)
        with _torch_threads():
            # read in place whatever oneDNN's layout (NCHW after a one-channel input): a copy costs more
            _relu_pool_forward(conv.permute(0, 2, 3, 1).numpy(), pooled.numpy(), winner.numpy())
        # the weights as the input gradient's kernel reads them: (C, K, LANES) or flat (C, K, K, Cin)
        in_channels, size = weight.shape[1], weight.shape[-1]
        ctx.padded_rows = in_channels == 1 and size <= LANES
        if ctx.padded_rows:
            kernel = F.pad(weight.detach().float().reshape(channels, size, size), (0, LANES - size))
        else:
            kernel = weight.detach().float().permute(0, 2, 3, 1).contiguous().view(-1)
        ctx.save_for_backward(pooled, winner, kernel)
        ctx.input_shape, ctx.size = x.shape, size
        return pooled.permute(0, 3, 1, 2)  # (B, C, H', W') in channels-last memory

    @staticmethod
    def backward(ctx, gradient: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        pooled, winner, kernel = ctx.saved_tensors
        images, in_channels, height, width = ctx.input_shape
        gradient = gradient.permute(0, 2, 3, 1).float().contiguous().numpy()
        with _torch_threads():
            if ctx.padded_rows:
                x_gradient = torch.empty(images, height, width)
                _one_channel_input_gradient(gradient, pooled.numpy(), winner.numpy(), kernel.numpy(), x_gradient.numpy())
                return x_gradient.view(ctx.input_shape), None, None
            x_gradient = torch.empty(images, height * width * in_channels)
            _input_gradient(
                gradient, pooled.numpy(), winner.numpy(), kernel.numpy(), x_gradient.numpy(), height, ctx.size, in_channels
            )
        return x_gradient.view(images, height, width, in_channels).permute(0, 3, 1, 2), None, None


class FusedConvReluPool(nn.Module):
    """``max_pool2d(relu(conv(x)), 2)`` for a stride-1 `conv`: the fused kernels on
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
    """Replace each Conv2d -> ReLU -> MaxPool2d(2) chain of modules in `module`'s graph
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
