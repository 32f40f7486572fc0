"""The paper's six architectures: logits, penultimate embeddings, exact parameter counts,
gradients to the input (attacks), and activation modules where MC dropout hooks in."""

import pytest
import torch
from torch import nn

from robustal.acquisition.dropout import dropout_sites, mc_dropout
from robustal.errors import ConfigError
from robustal.models import available_models, build_model

# name: (input channels, parameter count with 10 classes, embedding size, activation modules)
# Counts equal those of the paper's code: kuangliu/pytorch-cifar (VGG16 14,728,266; ResNet18
# 11,173,962; PreActResNet18 11,171,146; GoogLeNet 6,166,250) and its vgg8_bn / LeNet5.
ARCHITECTURES = {
    "lenet5": (1, 61_990, 84, 4),
    "vgg8": (3, 3_918_858, 512, 5),
    "vgg16": (3, 14_728_266, 512, 13),
    "resnet18": (3, 11_173_962, 512, 17),
    "preact_resnet18": (3, 11_171_146, 512, 16),
    "googlenet": (3, 6_166_250, 1024, 64),
}


@pytest.fixture(scope="session")
def models():
    torch.manual_seed(0)
    return {name: build_model(name, channels, 10, 32).eval() for name, (channels, *_) in ARCHITECTURES.items()}


def batch(name):
    return torch.rand(2, ARCHITECTURES[name][0], 32, 32, generator=torch.Generator().manual_seed(1))


def test_all_are_registered():
    assert set(ARCHITECTURES) <= set(available_models())


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_parameter_count(models, name):
    assert sum(parameter.numel() for parameter in models[name].parameters()) == ARCHITECTURES[name][1]


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_logits_and_embedding(models, name):
    model, x = models[name], batch(name)
    with torch.no_grad():
        logits, embedding = model(x), model.embed(x)
    assert logits.shape == (2, 10) and embedding.shape == (2, ARCHITECTURES[name][2])
    assert model.embedding_size == ARCHITECTURES[name][2]
    torch.testing.assert_close(model.head(embedding), logits)  # the embedding is the last layer's input
    assert model.spec == {"name": name, "in_channels": ARCHITECTURES[name][0], "num_classes": 10, "image_size": 32}


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_every_activation_module_is_used_once_and_mc_dropout_changes_outputs(models, name):
    model, x = models[name], batch(name)
    sites = dropout_sites(model)
    assert len(sites) == ARCHITECTURES[name][3] and all(isinstance(site, nn.ReLU) for site in sites)
    calls = []
    handles = [site.register_forward_hook(lambda module, inputs, output: calls.append(module)) for site in sites]
    try:
        with torch.no_grad():
            plain = model(x)
    finally:
        for handle in handles:
            handle.remove()
    assert len(calls) == len(sites) and len(set(map(id, calls))) == len(sites)  # no functional activations
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad(), mc_dropout(model, 0.1, generator):
        first, second = model(x), model(x)
    assert not torch.allclose(first, plain) and not torch.allclose(first, second)
    with torch.no_grad():
        torch.testing.assert_close(model(x), plain)  # hooks removed, eval mode deterministic


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_gradients_reach_the_input_in_train_mode(models, name):
    model, x = models[name], batch(name).requires_grad_(True)
    model.train()
    try:
        nn.functional.cross_entropy(model(x), torch.tensor([0, 1])).backward()
    finally:
        model.eval()
        model.zero_grad(set_to_none=True)
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_other_channels_classes_and_sizes():
    model = build_model("resnet18", 1, 7, 28)  # grayscale MNIST-size input
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 7)
    assert build_model("vgg8", 1, 10, 28)(torch.rand(2, 1, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("name, size", [("vgg16", 28), ("vgg8", 4), ("resnet18", 4), ("googlenet", 2)])
def test_too_small_images_are_refused(name, size):
    with pytest.raises(ConfigError, match=rf"{name} needs images of at least"):
        build_model(name, 3, 10, size)


def test_vgg8_is_initialised_like_the_paper():
    torch.manual_seed(0)
    model = build_model("vgg8", 3, 10, 32)
    last_conv = [module for module in model.modules() if isinstance(module, nn.Conv2d)][-1]
    assert last_conv.bias.abs().sum() == 0 and model.head.bias.abs().sum() == 0
    assert last_conv.weight.std().item() == pytest.approx((2 / (9 * 512)) ** 0.5, rel=0.02)
    assert model.head.weight.std().item() == pytest.approx(0.01, rel=0.05)
