"""Study specs: grid expansion, stable run ids, presets, clear errors, the shipped examples."""

from pathlib import Path

import pytest

from robustal.config import make_config
from robustal.errors import ConfigError
from robustal.experiments import StudySpec, load_study_spec
from study_helpers import tiny_spec, write_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_grid_is_the_product_of_its_lists_in_the_order_written():
    grid = {"acquisition": ["random", "entropy"], "training": ["standard", "pgd"], "seed": [0, 1, 2]}
    configs = StudySpec.from_dict(tiny_spec(grid)).expand()
    assert len(configs) == 12
    assert [(c.acquisition, c.training, c.seed) for c in configs[:4]] == [
        ("random", "standard", 0), ("random", "standard", 1), ("random", "standard", 2), ("random", "pgd", 0),
    ]  # fmt: skip
    assert all(c.budget == 60 and c.epochs == 1 for c in configs)  # shared settings reach every run
    assert len({c.run_id() for c in configs}) == 12


def test_run_ids_are_stable_and_those_of_the_resolved_settings(tmp_path):
    spec = tiny_spec({"acquisition": ["entropy"], "seed": [3]})
    first = load_study_spec(write_spec(tmp_path / "spec.yaml", spec)).expand()
    second = load_study_spec(write_spec(tmp_path / "again.yaml", spec)).expand()
    assert [c.run_id() for c in first] == [c.run_id() for c in second]
    direct = make_config(**spec["settings"], acquisition="entropy", seed=3)
    assert first[0].run_id() == direct.run_id()
    # a device or data root does not change what is computed, so not the id either
    moved = tiny_spec({"acquisition": ["entropy"], "seed": [3]}, device="cpu", data_root="/elsewhere")
    assert StudySpec.from_dict(moved).expand()[0].run_id() == direct.run_id()


def test_combinations_that_resolve_to_the_same_run_are_one_run():
    # digits' default model is small_cnn: `null` and `small_cnn` are the same run
    configs = StudySpec.from_dict(tiny_spec({"model": [None, "small_cnn", "mlp"], "seed": [0, 1]})).expand()
    assert [(c.model_name, c.seed) for c in configs] == [("small_cnn", 0), ("small_cnn", 1), ("mlp", 0), ("mlp", 1)]


def test_preset_fills_settings_and_explicit_settings_win():
    spec = StudySpec.from_dict({"settings": {"preset": "quick", "budget": 300}, "grid": {"dataset": ["digits"]}})
    (config,) = spec.expand()
    assert (config.model_name, config.initial, config.per_round, config.eps) == ("small_cnn", 100, 100, 0.1)
    assert config.budget == 300


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"grid": {"seed": [0]}, "runs": 3}, "unknown key 'runs' in study spec; valid keys: name, settings, grid"),
        ({"settings": {"budget": 60}}, "has no `grid`"),
        ({"grid": {"acquisitions": ["random"]}}, "unknown setting 'acquisitions' in `grid`; valid settings: acquisition,"),
        ({"grid": {"seed": [0]}, "settings": {"epoch": 1}}, "unknown setting 'epoch' in `settings`; valid settings:"),
        ({"grid": {"seed": 0}}, "grid.seed must be a non-empty list of values"),
        ({"grid": {"seed": []}}, "grid.seed must be a non-empty list of values"),
        ({"grid": {"seed": [0]}, "settings": {"seed": 1}}, "seed is both in `grid` and in `settings`"),
        ({"grid": ["seed"]}, "grid[0] must be a mapping of setting names to value lists, not 'seed'"),
        ({"grid": []}, "`grid` is empty"),
        ({"grid": None}, "`grid` is empty"),
        ({"grid": 3}, "`grid` in study spec must be a mapping"),
        ({"grid": [{"seed": [0]}, {"seed": 1}]}, "grid[1].seed must be a non-empty list of values"),
        ({"grid": {"acquisition": [{"dre": 1}]}}, "an acquisition function is a name or a mapping from a name to its options"),
        ([1, 2], "study spec must be a mapping with keys name, settings, grid, not list"),
    ],
)
def test_malformed_specs_say_what_is_wrong(spec, message):
    with pytest.raises(ConfigError) as error:
        StudySpec.from_dict(spec)
    assert message in str(error.value)


@pytest.mark.parametrize(
    "grid, settings, message",
    [
        ({"acquisition": ["random", "entropyy"]}, {}, "run (acquisition=entropyy): invalid run settings: unknown acquisition function 'entropyy'"),
        ({"seed": [0], "budget": [10]}, {"initial": 20}, "run (seed=0, budget=10): invalid run settings: budget (10) must be at least the initial"),
        ({"dataset": ["digits"]}, {"preset": "fast"}, "unknown preset 'fast'; valid choices: paper, quick"),
        ({"acquisition": ["dre"]}, {"acquisition_options": {"binz": 5}}, "invalid options for acquisition 'dre'"),
    ],
)
def test_invalid_runs_fail_before_anything_runs_naming_their_combination(grid, settings, message):
    with pytest.raises(ConfigError) as error:
        StudySpec.from_dict({"grid": grid, "settings": settings}).expand()
    assert message in str(error.value)


def test_unreadable_spec_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="study spec .*missing.yaml not found"):
        load_study_spec(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("grid: {seed: [0\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_study_spec(broken)


def test_paper_mnist_example_is_the_papers_grid():
    configs = load_study_spec(EXAMPLES / "paper-mnist.yaml").expand()
    assert len(configs) == 72
    paper_functions = ["bald", "dfal", "dre", "egl", "entropy", "entropy_dropout", "gini", "kcenter",
                       "least_confidence", "margin", "mcp", "random"]  # fmt: skip
    assert sorted({c.acquisition for c in configs}) == paper_functions
    assert {c.training for c in configs} == {"standard", "pgd"} and {c.seed for c in configs} == {0, 1, 2}
    settings = {(c.dataset, c.model_name, c.image_size, c.initial, c.per_round, c.budget, c.epochs, c.eps) for c in configs}
    assert settings == {("mnist", "lenet5", 32, 200, 200, 5000, 10, 0.3)}
    assert {(c.train_steps, c.eval_steps, c.step_size, c.optimizer, c.lr, c.batch_size) for c in configs} == {
        (40, 50, 0.01, "adam", 1e-3, 100)
    }


def test_quick_example_is_a_small_digits_grid():
    configs = load_study_spec(EXAMPLES / "quick.yaml").expand()
    assert len(configs) == 12 and {c.dataset for c in configs} == {"digits"}
    assert {c.training for c in configs} == {"standard", "pgd"} and all(c.budget <= 400 for c in configs)


def test_a_list_of_grids_is_their_union_in_order_and_acquisition_items_carry_options():
    spec = StudySpec.from_dict(tiny_spec([
        {"training": ["standard"], "acquisition": ["random"], "seed": [0]},
        {"training": ["pgd"], "seed": [0, 1], "acquisition": ["random", "dre", {"dre": {"quota": "proportional"}}]},
    ]))  # fmt: skip
    configs = spec.expand()
    assert [(c.training, c.seed, c.acquisition, c.acquisition_options) for c in configs] == [
        ("standard", 0, "random", {}),
        ("pgd", 0, "random", {}), ("pgd", 0, "dre", {}), ("pgd", 0, "dre", {"quota": "proportional"}),
        ("pgd", 1, "random", {}), ("pgd", 1, "dre", {}), ("pgd", 1, "dre", {"quota": "proportional"}),
    ]  # fmt: skip
    assert len({c.run_id() for c in configs}) == 7
    assert StudySpec.from_dict(spec.to_dict()).expand() == configs  # what study.yaml stores reads back the same
