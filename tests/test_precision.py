"""bf16 precision: valid adversarial examples, fp32 master weights, results close to fp32."""

import copy

import pytest
import torch

from run_helpers import tiny_settings
from robustal.accel import Execution, check_precision
from robustal.attacks import FGSM, PGD
from robustal.config import make_config
from robustal.errors import ConfigError
from robustal.evaluation import evaluate
from robustal.loop import run_active_learning
from robustal.models import build_model
from robustal.runtime import to_float
from robustal.seeding import torch_generator
from robustal.training import TrainingPlan, build_regime, fit, make_optimizer

CPU = torch.device("cpu")


@pytest.fixture
def batch(digits):
    return to_float(digits.test.images[:64]), digits.test.labels[:64]


def test_autocast_is_a_no_op_in_fp32_and_bf16_autocast_otherwise():
    with Execution(CPU, "fp32").context():
        assert not torch.is_autocast_enabled("cpu")
    with Execution(CPU, "bf16").context():
        assert torch.is_autocast_enabled("cpu")
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
        assert torch.nn.Linear(3, 2)(torch.ones(1, 3)).dtype == torch.bfloat16


@pytest.mark.parametrize("name", ["fp16", "float32", ""])
def test_unknown_precisions_are_rejected(name):
    with pytest.raises(ConfigError, match="unknown precision"):
        check_precision(name)
    with pytest.raises(ConfigError, match="precision"):
        make_config(precision=name)
    with pytest.raises(ConfigError, match="unknown precision"):
        Execution(CPU, name)


@pytest.mark.parametrize("attack", [PGD(eps=0.1, step_size=0.02, steps=10), FGSM(eps=0.1)], ids=repr)
def test_bf16_adversarial_examples_are_float32_in_the_eps_ball_and_pixel_range(trained_digits_model, batch, attack):
    x, y = batch
    model = trained_digits_model
    model.zero_grad(set_to_none=True)
    with Execution(CPU, "bf16").context():
        x_adv = attack(model, x, y, torch_generator(0, "t"))
    assert x_adv.dtype == torch.float32 and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6
    assert (x_adv - x).abs().max() > 0.05  # it moved
    assert all(p.grad is None for p in model.parameters())  # gradients w.r.t. the input only
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_bf16_evaluation_is_close_to_fp32(trained_digits_model, digits):
    attack = PGD(eps=0.1, step_size=0.02, steps=10)
    results = {
        precision: evaluate(trained_digits_model, digits.test, Execution(CPU, precision), attack, torch_generator(0, "e"))
        for precision in ("fp32", "bf16")
    }
    assert abs(results["bf16"].clean_accuracy - results["fp32"].clean_accuracy) <= 0.02
    assert abs(results["bf16"].robust_accuracy - results["fp32"].robust_accuracy) <= 0.05


def test_bf16_adversarial_training_keeps_fp32_master_weights_and_matches_fp32(digits):
    attack = PGD(eps=0.2, step_size=0.05, steps=5)
    torch.manual_seed(0)
    initial = build_model("small_cnn", 1, 10, 8)
    robustness = {}
    for precision in ("fp32", "bf16"):
        model = copy.deepcopy(initial)
        optimizer = make_optimizer("adam", model, 3e-3)
        plan = TrainingPlan(build_regime("pgd", attack), lambda m: 0.0, epochs=8, batch_size=32)
        fit(model, plan, digits.train, Execution(CPU, precision), optimizer=optimizer)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        assert all(v.dtype == torch.float32 for state in optimizer.state.values() for v in state.values() if v.is_floating_point())
        robustness[precision] = evaluate(model, digits.test, CPU, attack, torch_generator(0, "e")).robust_accuracy
    untrained = evaluate(initial, digits.test, CPU, attack, torch_generator(0, "e")).robust_accuracy
    assert robustness["fp32"] > untrained + 0.2  # adversarial training worked (about 0.1 -> 0.4)
    assert abs(robustness["bf16"] - robustness["fp32"]) <= 0.08


def test_bf16_run_works_end_to_end_and_has_its_own_run_id(digits):
    config = make_config(**tiny_settings(precision="bf16", channels_last=True, fold_batchnorm=True))
    result = run_active_learning(config, dataset=digits)
    assert [r.labeled for r in result.records] == [30, 60, 90]
    assert all(0 <= r.robust_accuracy <= r.clean_accuracy + 0.05 for r in result.records)
    assert all(r.validation_seconds > 0 for r in result.records)
    default = make_config(**tiny_settings())
    assert config.run_id() != default.run_id()
    # speed settings at their defaults stay out of the identity: ids of older runs do not change
    assert not {"precision", "channels_last", "fold_batchnorm", "compile", "cuda_graphs"} & set(default.identity())
    # CUDA graphs say how a run executes, not what it computes: the same run, resumable either way
    assert make_config(**tiny_settings(cuda_graphs=True)).run_id() == default.run_id()
