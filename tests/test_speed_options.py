"""Execution settings that must not change what is computed: evaluation batch size, BatchNorm
folding in attacks, channels-last weights, torch.compile wiring, the execution route itself.
No timed assertions."""

import copy

import pytest
import torch
from torch import nn

from robustal.attacks import PGD
from robustal.evaluation import evaluate
from robustal.models import build_model
from robustal.accel import Execution, current_execution, fold_batchnorm
from robustal.runtime import to_float
from robustal.seeding import torch_generator

CPU = torch.device("cpu")


def model_with_batchnorm_statistics(name: str, channels: int, size: int) -> nn.Module:
    """A freshly built model whose BatchNorm layers hold non-trivial running statistics."""
    torch.manual_seed(0)
    model = build_model(name, channels, 10, size)
    with torch.no_grad():
        model.train()(torch.rand(32, channels, size, size) * 2)
    return model.eval()


def test_evaluation_gives_identical_results_for_any_batch_size_in_fp32(trained_digits_model, digits):
    attack = PGD(eps=0.1, step_size=0.02, steps=5)
    results = {
        size: evaluate(trained_digits_model, digits.test, CPU, attack, torch_generator(0, "e"), batch_size=size)
        for size in (32, 100, 500, len(digits.test))
    }
    assert len(set(results.values())) == 1, results


@pytest.mark.parametrize("name, channels, size", [("small_cnn", 1, 8), ("lenet5", 1, 32), ("resnet18", 3, 32)])
def test_folded_view_computes_the_models_eval_function_and_follows_its_updates(name, channels, size):
    model = model_with_batchnorm_statistics(name, channels, size)
    x = torch.rand(4, channels, size, size)
    view = fold_batchnorm(model)
    assert view is not model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in view.modules())
    torch.testing.assert_close(view(x), model(x), rtol=1e-4, atol=1e-5)
    with torch.no_grad():  # an optimizer step and new running statistics
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
        model.train()(torch.rand(32, channels, size, size))
    model.eval()
    torch.testing.assert_close(fold_batchnorm(model)(x), model(x), rtol=1e-4, atol=1e-5)


def test_folded_view_refreshes_its_weights_in_place():
    # CUDA graphs captured on the view read the folded weights from fixed memory
    model = model_with_batchnorm_statistics("lenet5", 1, 32)
    folded = [m for m in fold_batchnorm(model).modules() if isinstance(m, nn.Conv2d)]
    addresses = [(m.weight.data_ptr(), m.bias.data_ptr()) for m in folded]
    before = [m.weight.clone() for m in folded]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05)
    fold_batchnorm(model)
    assert [(m.weight.data_ptr(), m.bias.data_ptr()) for m in folded] == addresses
    assert not any(torch.equal(m.weight, b) for m, b in zip(folded, before))
    assert not any(m.weight.requires_grad or m.bias.requires_grad for m in folded)


def attack_in(execution: Execution, model, x, y):
    with execution.context():
        return PGD(eps=0.1, step_size=0.02, steps=5)(model, x, y, torch_generator(0, "a"))


def test_cuda_graphs_change_nothing_on_cpu(digits):
    model = model_with_batchnorm_statistics("small_cnn", 1, 8)
    x, y = to_float(digits.test.images[:64]), digits.test.labels[:64]
    graphed = attack_in(Execution(CPU, cuda_graphs=True), model, x, y)
    plain = PGD(eps=0.1, step_size=0.02, steps=5)(model, x, y, torch_generator(0, "a"))
    assert torch.equal(graphed, plain)


def test_models_without_batchnorm_or_untraceable_are_attacked_as_they_are():
    mlp = build_model("mlp", 1, 10, 8)

    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.norm = nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)

        def forward(self, x):
            return self.norm(self.conv(x)) if x.sum() > 0 else x

    untraceable = DataDependent().eval()
    assert fold_batchnorm(mlp) is mlp
    assert fold_batchnorm(untraceable) is untraceable


def test_a_failure_while_rewriting_a_traced_model_is_not_hidden(monkeypatch):
    # only "torch.fx cannot trace this model" means "attack it unfolded"; a bug in the rewrite surfaces
    import robustal.accel.folding

    def broken(module):
        raise ValueError("rewrite bug")

    monkeypatch.setattr(robustal.accel.folding, "fuse_conv_relu_pool", broken)
    with pytest.raises(ValueError, match="rewrite bug"):
        fold_batchnorm(model_with_batchnorm_statistics("small_cnn", 1, 8))


@pytest.mark.parametrize("training", [True, False])
def test_folding_attack_leaves_mode_statistics_and_gradients_alone(training, digits):
    model = model_with_batchnorm_statistics("small_cnn", 1, 8)
    x, y = to_float(digits.test.images[:64]), digits.test.labels[:64]
    statistics = copy.deepcopy({k: v for k, v in model.state_dict().items() if "running" in k})
    model.train(training)
    folded = attack_in(Execution(CPU, fold_batchnorm=True), model, x, y)
    plain = attack_in(Execution(CPU), model, x, y)
    assert model.training is training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(model.state_dict()[k], v) for k, v in statistics.items())
    assert (folded - x).abs().max() <= 0.1 + 1e-6 and folded.min() >= 0 and folded.max() <= 1
    assert (folded != plain).float().mean() < 0.01  # the same attack up to float rounding


def test_channels_last_changes_the_layout_not_the_results(trained_digits_model, digits):
    model = Execution(CPU, channels_last=True).prepare(copy.deepcopy(trained_digits_model))
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.ndim == 4)
    attack = PGD(eps=0.1, step_size=0.02, steps=5)
    reference = evaluate(trained_digits_model, digits.test, CPU, attack, torch_generator(0, "e"))
    result = evaluate(model, digits.test, CPU, attack, torch_generator(0, "e"))
    assert result.clean_accuracy == pytest.approx(reference.clean_accuracy, abs=0.005)
    assert result.robust_accuracy == pytest.approx(reference.robust_accuracy, abs=0.01)


def test_compile_keeps_parameter_names_and_state_dict():
    model = build_model("small_cnn", 1, 10, 8)
    keys = list(model.state_dict())
    Execution(CPU, compile=True).prepare(model)  # compilation itself happens lazily, at the first call
    assert list(model.state_dict()) == keys
    assert model._compiled_call_impl is not None


def test_the_attack_runs_on_the_view_of_the_enclosing_execution(monkeypatch, digits):
    model = model_with_batchnorm_statistics("small_cnn", 1, 8)
    x, y = to_float(digits.test.images[:16]), digits.test.labels[:16]
    attacked = []
    original = PGD.perturb
    monkeypatch.setattr(PGD, "perturb", lambda self, target, *rest: attacked.append(target) or original(self, target, *rest))
    attack_in(Execution(CPU, fold_batchnorm=True), model, x, y)
    attack_in(Execution(CPU), model, x, y)
    PGD(steps=1)(model, x, y)  # outside any execution: the model itself
    assert attacked[0] is fold_batchnorm(model) and attacked[0] is not model
    assert attacked[1] is model and attacked[2] is model
    assert current_execution() == Execution()  # the context was left


def test_an_execution_comes_from_the_run_config_and_prepares_the_model_once():
    from robustal.config import make_config

    config = make_config(precision="bf16", channels_last=True, fold_batchnorm=True, device="cpu")
    execution = Execution.from_config(config)
    assert execution == Execution(CPU, "bf16", channels_last=True, fold_batchnorm=True)
    model = execution.prepare(build_model("lenet5", 1, 10, 32))
    assert all(p.is_contiguous(memory_format=torch.channels_last) for p in model.parameters() if p.ndim == 4)
    assert Execution.of(execution) is execution and Execution.of("cpu") == Execution()


def test_fit_and_evaluate_run_the_attacks_in_the_execution_they_are_given(monkeypatch, digits):
    from robustal.training import TrainingPlan, build_regime, fit

    seen = []
    original = PGD.perturb

    def recording(self, target, *rest):
        seen.append((target is not model, torch.is_autocast_enabled("cpu")))
        return original(self, target, *rest)

    monkeypatch.setattr(PGD, "perturb", recording)
    model = model_with_batchnorm_statistics("small_cnn", 1, 8)
    attack = PGD(eps=0.1, step_size=0.05, steps=2)
    plan = TrainingPlan(build_regime("pgd", attack), lambda m: 0.0, epochs=1, batch_size=100)
    execution = Execution(CPU, "bf16", fold_batchnorm=True)
    fit(model, plan, digits.train.subset(slice(0, 200)), execution)
    evaluate(model, digits.test.subset(slice(0, 50)), execution, attack)
    assert seen == [(True, True)] * 3  # two training batches and one evaluation batch: folded view, bf16
    seen.clear()
    evaluate(model, digits.test.subset(slice(0, 50)), CPU, attack)
    assert seen == [(False, False)]
