"""The fused CPU kernels (conv, ReLU, 2x2 max pooling) compute what the three layers compute."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

from robustal.accel import Execution, fold_batchnorm, kernels
from robustal.attacks import PGD
from robustal.models import build_model
from robustal.seeding import torch_generator

pytestmark = pytest.mark.skipif(kernels.numba is None, reason="the fused kernels need numba")


def unfused(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(F.relu(conv(x)), 2)


def block(channels: int, size: int, padding: int = 0, seed: int = 0, in_channels: int = 1) -> nn.Conv2d:
    torch.manual_seed(seed)
    return nn.Conv2d(in_channels, channels, size, padding=padding).requires_grad_(False)


def output_and_input_gradient(layer, x: torch.Tensor, upstream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = x.detach().clone().requires_grad_(True)
    output = layer(x)
    (gradient,) = torch.autograd.grad(output, x, upstream)
    return output, gradient


@pytest.mark.parametrize(
    "batch, in_channels, channels, size, padding, image",
    [
        (7, 1, 6, 5, 0, 32), (3, 1, 6, 5, 2, 28), (1, 1, 4, 3, 0, 31), (5, 1, 8, 3, 1, 12), (2, 1, 6, 5, 0, 30),
        (6, 6, 16, 5, 0, 14), (3, 3, 8, 3, 1, 12), (2, 16, 32, 3, 1, 9), (4, 5, 7, 3, 0, 13), (2, 1, 4, 9, 0, 20),
    ],
)  # fmt: skip
def test_fused_block_matches_conv_relu_pool(batch, in_channels, channels, size, padding, image):
    conv = block(channels, size, padding, in_channels=in_channels)
    x = torch.rand(batch, in_channels, image, image, generator=torch.Generator().manual_seed(1))
    rows = (image + 2 * padding - size + 1) // 2  # odd convolution outputs drop their last row
    upstream = torch.randn(batch, channels, rows, rows, generator=torch.Generator().manual_seed(2))
    fused, fused_gradient = output_and_input_gradient(kernels.FusedConvReluPool(conv), x, upstream)
    reference, reference_gradient = output_and_input_gradient(lambda t: unfused(conv, t), x, upstream)
    assert fused.shape == reference.shape == (batch, channels, rows, rows)
    torch.testing.assert_close(fused, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fused_gradient, reference_gradient, rtol=1e-5, atol=1e-6)
    assert (fused == 0).float().mean() > 0.05  # the ReLU and its zero gradient were exercised
    assert torch.get_num_threads() == 1  # as conftest set it: numba's start-up must not change it


@pytest.mark.parametrize("in_channels", [1, 3])
def test_ties_and_zeros_route_the_gradient_like_aten(in_channels):
    # small integers: every sum is exact, many windows hold equal maxima or only zeros
    conv = block(6, 3, in_channels=in_channels)
    with torch.no_grad():
        conv.weight.copy_(torch.randint(-1, 2, conv.weight.shape).float())
        conv.bias.zero_()
    x = torch.randint(0, 3, (4, in_channels, 14, 14), generator=torch.Generator().manual_seed(0)).float()
    upstream = torch.randn(4, 6, 6, 6, generator=torch.Generator().manual_seed(3))
    fused, fused_gradient = output_and_input_gradient(kernels.FusedConvReluPool(conv), x, upstream)
    reference, reference_gradient = output_and_input_gradient(lambda t: unfused(conv, t), x, upstream)
    windows = F.relu(conv(x)).unfold(2, 2, 2).unfold(3, 2, 2).flatten(-2)
    ties = (windows == windows.amax(-1, keepdim=True)).sum(-1) > 1
    assert ties[windows.amax(-1) > 0].any()  # positive ties occur, not just all-zero windows
    assert torch.equal(fused, reference)
    # a gradient routed to another position of a tie would differ by about 1, not by rounding
    torch.testing.assert_close(fused_gradient, reference_gradient, rtol=1e-5, atol=1e-5)


def test_layers_run_unfused_where_the_kernels_do_not_apply():
    conv = block(6, 5).requires_grad_(True)
    layer = kernels.FusedConvReluPool(conv)
    x = torch.rand(2, 1, 16, 16)
    output = layer(x)  # the weights need gradients: the layers as they are
    assert output.grad_fn is not None and "ConvReluPool" not in type(output.grad_fn).__name__
    output.sum().backward()
    assert conv.weight.grad is not None
    double = layer.double()(x.double())  # float64 stays float64
    assert double.dtype == torch.float64
    torch.testing.assert_close(double, unfused(conv.double(), x.double()))


def test_rewrite_fuses_only_whole_chains_and_needs_numba(monkeypatch):
    plain = nn.Sequential(nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2))
    traced = fx.symbolic_trace(plain)
    assert kernels.fuse_conv_relu_pool(traced) == 2
    assert sum(isinstance(m, kernels.FusedConvReluPool) for m in traced.modules()) == 2
    x = torch.rand(3, 1, 32, 32)
    torch.testing.assert_close(traced(x), plain(x), rtol=1e-5, atol=1e-6)
    assert isinstance(plain[0], nn.Conv2d) and isinstance(plain[1], nn.ReLU)  # the model itself is unchanged
    model = build_model("lenet5", 1, 10, 32).eval()
    assert kernels.fuse_conv_relu_pool(fx.symbolic_trace(model)) == 0  # a BatchNorm sits in between, unfolded

    class Branching(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.relu, self.pool = nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2)

        def forward(self, x):
            hidden = self.relu(self.conv(x))
            return self.pool(hidden), hidden  # the ReLU output is used twice

    assert kernels.fuse_conv_relu_pool(fx.symbolic_trace(Branching())) == 0
    monkeypatch.setattr(kernels, "numba", None)
    assert kernels.fuse_conv_relu_pool(fx.symbolic_trace(plain)) == 0


def test_attacks_through_the_fused_view_match_the_plain_model():
    torch.manual_seed(0)
    model = build_model("lenet5", 1, 10, 32)
    with torch.no_grad():
        model.train()(torch.rand(64, 1, 32, 32) * 2)
    model.eval()
    assert any(isinstance(m, kernels.FusedConvReluPool) for m in fold_batchnorm(model).modules())
    x, y = torch.rand(50, 1, 32, 32), torch.randint(0, 10, (50,))
    with Execution(fold_batchnorm=True).context():
        fused = PGD(steps=10)(model, x, y, torch_generator(0, "a"))
    plain = PGD(steps=10)(copy.deepcopy(model), x, y, torch_generator(0, "a"))
    assert (fused != plain).float().mean() < 0.01  # the same attack up to float rounding
