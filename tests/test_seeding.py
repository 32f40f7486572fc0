import torch

from robustal.seeding import derive_seed, numpy_rng, torch_generator


def test_derived_seeds_depend_on_seed_and_purpose_only():
    assert derive_seed(0, "select", 1) == derive_seed(0, "select", 1)
    assert len({derive_seed(0, "select", 1), derive_seed(0, "select", 2), derive_seed(1, "select", 1), derive_seed(0, "init")}) == 4
    assert 0 <= derive_seed(123, "x") < 2**63
    assert (numpy_rng(5, "a").integers(1000, size=5) == numpy_rng(5, "a").integers(1000, size=5)).all()
    g1, g2 = torch_generator(5, "a"), torch_generator(5, "a")
    assert torch.equal(torch.rand(4, generator=g1), torch.rand(4, generator=g2))
