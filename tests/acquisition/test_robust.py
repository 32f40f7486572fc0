"""ADRE: DRE on the entropies of the model's predictions at PGD examples of the pool."""

import numpy as np
import pytest
import torch

from robustal.acquisition import PoolContext, build_acquisition
from robustal.acquisition import robust
from robustal.acquisition.scoring import entropy, softmax
from robustal.attacks import PGD
from robustal.errors import ConfigError
from robustal.models import build_model


@pytest.fixture(scope="module")
def pool_context():
    torch.manual_seed(0)
    model = build_model("small_cnn", 1, 10, 8).eval()
    images = (torch.rand(300, 1, 8, 8) * 255).to(torch.uint8)
    return PoolContext(model, images, np.arange(20), torch.device("cpu"))


def test_adre_draws_dre_over_the_entropies_of_adversarial_examples(pool_context, monkeypatch):
    seen, original = {}, robust.dre_positions

    def spy(entropies, k, rng, bins, quota):
        seen["entropies"] = entropies
        return original(entropies, k, rng, bins, quota)

    monkeypatch.setattr(robust, "dre_positions", spy)
    pool = np.arange(20, 300)
    function = build_acquisition("adre", eps=0.2, steps=2, subset_size=None)
    chosen = function.select(pool_context, pool, 30, np.random.default_rng(0))
    assert len(set(chosen.tolist())) == 30 and set(chosen.tolist()) <= set(pool.tolist())
    # the entropies are those of the model at its own PGD-2 examples, computed here independently
    model, x = pool_context.model, pool_context.images[pool].float() / 255
    attack = PGD(0.2, 0.25, 2, random_start=False)
    x_adv = attack(model, x, model(x).argmax(1))
    expected = entropy(softmax(model(x_adv))).detach().double().numpy()
    np.testing.assert_allclose(seen["entropies"], expected, rtol=1e-5, atol=1e-6)
    clean = entropy(softmax(model(x))).detach().double().numpy()
    assert expected.mean() > clean.mean()  # the attack moved points towards the boundary


def test_adre_attacks_a_seeded_subset_of_a_large_pool(pool_context):
    function = build_acquisition("adre", steps=1, subset_size=50)
    pool = np.arange(20, 300)
    first = function.select(pool_context, pool, 10, np.random.default_rng(5))
    again = function.select(pool_context, pool, 10, np.random.default_rng(5))
    assert first.tolist() == again.tolist() and len(set(first.tolist())) == 10


@pytest.mark.parametrize(
    "options, message",
    [({"eps": 0}, "eps must be a number in \\(0, 1\\]"), ({"eps": 3}, "eps must be"), ({"steps": 51}, "at most 50"),
     ({"quota": "up"}, "quota must be one of paper, proportional"), ({"subset_size": 0}, "subset_size must be")],
)  # fmt: skip
def test_adre_options_are_bounded(options, message):
    with pytest.raises(ConfigError, match=message):
        build_acquisition("adre", **options)
