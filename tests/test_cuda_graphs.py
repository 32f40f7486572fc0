"""CUDA-graph attacks compute what eager attacks compute (run where a GPU is present; the CPU
side of the option is in test_speed_options.py)."""

import copy

import pytest
import torch
import torch.nn.functional as F

from robustal.accel import Execution
from robustal.accel.cuda_graphs import MAX_GRAPHS_PER_MODULE, replay_captured
from robustal.attacks import PGD
from robustal.data import Split
from robustal.evaluation import evaluate
from robustal.models import build_model
from robustal.seeding import torch_generator
from robustal.training import TrainingPlan, build_regime, fit

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
CUDA = torch.device("cuda")


def lenet(channels_last: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("lenet5", 1, 10, 32).to(CUDA)
    with torch.no_grad():  # non-trivial BatchNorm statistics
        model.train()(torch.rand(64, 1, 32, 32, device=CUDA) * 2)
    return Execution(CUDA, channels_last=channels_last).prepare(model.eval())


def batch(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 32, 32, generator=generator).to(CUDA), torch.randint(0, 10, (n,), generator=generator).to(CUDA)


def attack_both(model, x, y, precision="fp32", **options):
    results = []
    for graphs in (True, False):
        with Execution(CUDA, precision, cuda_graphs=graphs, **options).context():
            results.append(PGD(steps=10)(model, x, y, torch_generator(1, "a", device=CUDA)))
    return results


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a == b).float().mean().item()


@pytest.mark.parametrize("precision, options", [("fp32", {}), ("bf16", {"fold_batchnorm": True})])
def test_graphed_attack_equals_eager_and_follows_weight_updates(precision, options):
    model = lenet(channels_last=bool(options))
    x, y = batch(100)
    graphed, eager = attack_both(model, x, y, precision, **options)
    assert agreement(graphed, eager) > 0.999
    assert (graphed - x).abs().max() <= 0.3 + 1e-6
    # the optimizer changes the weights in place, the next epoch changes BatchNorm statistics
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    F.cross_entropy(model.train()(x), y).backward()
    optimizer.step()
    model.eval()
    graphed_after, eager_after = attack_both(model, x, y, precision, **options)
    assert agreement(graphed_after, eager_after) > 0.999
    assert agreement(graphed_after, graphed) < 0.99  # the replay saw the new weights


def test_one_graph_per_shape_then_eager():
    model = lenet()
    for n in range(1, MAX_GRAPHS_PER_MODULE + 3):  # more shapes than graphs are kept
        x, y = batch(n, seed=n)
        graphed, eager = attack_both(model, x, y)
        assert graphed.shape == x.shape and agreement(graphed, eager) > 0.99
    calls = []
    output = replay_captured(model, ("spy",), lambda t: calls.append(1) or t * 2, torch.ones(3, device=CUDA))
    assert calls == [1] and output.tolist() == [2.0, 2.0, 2.0]  # limit reached: one eager call, no capture


def test_a_precision_change_captures_a_new_graph():
    model = lenet()
    x, y = batch(100)
    attack_both(model, x, y, "fp32")
    graphed, eager = attack_both(model, x, y, "bf16")
    assert agreement(graphed, eager) > 0.999


def test_graphed_training_and_evaluation_match_eager():
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (300, 1, 8, 8), dtype=torch.uint8, generator=generator)
    data = Split(images=images, labels=(images.float().mean(dim=(1, 2, 3)) > 127.5).long())  # learnable
    results = []
    for graphs in (True, False):
        torch.manual_seed(0)
        model = build_model("small_cnn", 1, 10, 8).to(CUDA)
        attack, execution = PGD(eps=0.1, step_size=0.02, steps=5), Execution(CUDA, cuda_graphs=graphs)
        plan = TrainingPlan(build_regime("pgd", attack), lambda m: 0.0, epochs=2, batch_size=64)
        fit(model, plan, data, execution)  # 300 = 4 x 64 + 44: two shapes
        results.append((copy.deepcopy(model.state_dict()),
                        evaluate(model, data, execution, attack, torch_generator(0, "e", device=CUDA), batch_size=128)))
    (graphed_state, graphed_eval), (eager_state, eager_eval) = results
    # float-level differences flip the sign of near-zero gradients now and then, and Adam turns
    # each flip into a step of about 2 x lr: the trajectories stay within a few such steps
    for name, value in graphed_state.items():
        torch.testing.assert_close(value.float(), eager_state[name].float(), rtol=0, atol=1e-2)
    assert graphed_eval.robust_accuracy == pytest.approx(eager_eval.robust_accuracy, abs=0.02)
    assert graphed_eval.clean_accuracy == pytest.approx(eager_eval.clean_accuracy, abs=0.02)
