"""`robustal evaluate`: AutoAttack through the official code on a run and a study, stored and resumable."""

import json
import shutil

import numpy as np
import pytest
import torch

from run_helpers import tiny_settings
from robustal.autoattack import STANDARD_ATTACKS, autoattack_accuracy, parse_attacks
from robustal.config import make_config
from robustal.errors import ConfigError
from robustal.evaluation import evaluate
from robustal.experiments import evaluate as evaluate_module
from robustal.experiments.evaluate import evaluate_run, evaluate_study, evaluation_file
from robustal.experiments.runner import run_study
from robustal.experiments.spec import StudySpec
from robustal.experiments.store import study_results
from robustal.loop import load_checkpoint, read_run_config, run_active_learning
from robustal.seeding import derive_seed

from study_helpers import tiny_spec

pyautoattack = pytest.importorskip("pyautoattack")
ATTACKS = ("apgd-ce", "apgd-t")


@pytest.fixture(scope="module")
def robust_run(tmp_path_factory, digits):
    """A run whose model learned enough for margins on both sides of the robust accuracy (on the
    first 60 test digits: about 77% clean, 52% after APGD-CE and APGD-T)."""
    out = tmp_path_factory.mktemp("run")
    run_active_learning(make_config(**tiny_settings(epochs=3, eps=0.1, lr=0.01)), out, dataset=digits)
    return out


def test_attack_names_are_checked_and_kept_in_the_standard_order():
    assert parse_attacks("standard") == STANDARD_ATTACKS == parse_attacks(None)
    assert parse_attacks("apgd-t, apgd-ce") == ("apgd-ce", "apgd-t")
    with pytest.raises(ConfigError, match="unknown AutoAttack attack 'pgd'"):
        parse_attacks("apgd-ce,pgd")


def test_one_attack_at_a_time_equals_autoattacks_own_run(robust_run, digits):
    model, config, _ = load_checkpoint(robust_run)
    split = digits.test.subset(slice(0, 60))
    ours = autoattack_accuracy(model, split, config.eps, torch.device("cpu"), ATTACKS, seed=7)
    # the official code in one call, the standard version's parameters, the same seed
    adversary = pyautoattack.AutoAttack(model.eval(), norm="Linf", eps=config.eps, version="standard", seed=7)
    adversary.attacks_to_run = list(ATTACKS)
    x = split.images.float() / 255
    x_adv, _ = adversary.run_standard_evaluation(x, split.labels, batch_size=500)
    with torch.no_grad():
        theirs = ((model(x).argmax(1) == split.labels) & (model(x_adv).argmax(1) == split.labels)).float().mean().item()
    assert ours.robust_accuracy == pytest.approx(theirs)
    assert ours.clean_accuracy == pytest.approx(evaluate(model, split, torch.device("cpu")).clean_accuracy)
    after = list(ours.accuracy_after.values())
    assert list(ours.accuracy_after) == list(ATTACKS)
    assert ours.clean_accuracy >= after[0] >= after[1] == ours.robust_accuracy
    assert 0 < ours.robust_accuracy < ours.clean_accuracy  # a robust model, and the attacks do something
    assert (x_adv - x).abs().max().item() <= config.eps + 1e-6


def test_evaluate_run_stores_the_result_and_skips_it_next_time(robust_run):
    first, computed = evaluate_run(robust_run, "apgd-ce,apgd-t", samples=40)
    path = evaluation_file(robust_run, ATTACKS, 40)
    assert computed and json.loads(path.read_text()) == first
    assert first["samples"] == 40 and first["attacks"] == list(ATTACKS) and first["labeled"] == 90
    assert first["robust_accuracy"] <= first["clean_accuracy"]
    # APGD-CE + APGD-T are stronger than the run's short PGD: PGD's robust accuracy is not lower
    assert first["pgd_robust_accuracy"] >= first["robust_accuracy"]
    again, computed = evaluate_run(robust_run, "apgd-ce,apgd-t", samples=40)
    assert not computed and again == first
    with pytest.raises(ConfigError, match="--n must be between 1 and the"):
        evaluate_run(robust_run, "apgd-ce", samples=10**6)


def test_evaluate_study_evaluates_finished_runs_and_study_results_show_them(tmp_path):
    spec = StudySpec.from_dict(tiny_spec({"acquisition": ["random", "entropy"]}, budget=60, epochs=1))
    run_study(spec, tmp_path, workers=1, threads=1)
    outcomes = evaluate_study(tmp_path, "apgd-ce", samples=30)
    assert sorted(outcomes.values()) == ["computed", "computed"]
    assert sorted(evaluate_study(tmp_path, "apgd-ce", samples=30).values()) == ["skipped", "skipped"]
    final = study_results(tmp_path, "final")
    assert final["autoattack_attacks"].tolist() == ["apgd-ce", "apgd-ce"]
    assert (final["autoattack_samples"] == 30).all()
    assert (final["autoattack_robust_accuracy"] <= final["autoattack_pgd_robust_accuracy"] + 0.1).all()
    rounds = study_results(tmp_path, "rounds")
    assert rounds["autoattack_robust_accuracy"].notna().sum() == 2  # only the final round's model was attacked
    summary = study_results(tmp_path, "summary")
    assert (summary["autoattack_runs"] == 1).all()


def test_kept_round_checkpoints_let_learning_curves_be_reevaluated(tmp_path, digits):
    from robustal.experiments.evaluate import kept_rounds, models_to_evaluate

    config = make_config(**tiny_settings(budget=60, epochs=1, keep_round_checkpoints=True))
    assert config.run_id() == make_config(**tiny_settings(budget=60, epochs=1)).run_id()  # not part of the id
    result = run_active_learning(config, tmp_path, dataset=digits)
    assert kept_rounds(tmp_path) == [0, 1]
    assert models_to_evaluate(tmp_path, all_rounds=True) == [0, 1]  # round 1 is the final model: once
    first, _ = evaluate_run(tmp_path, "apgd-ce", samples=30, round_number=0)
    final, _ = evaluate_run(tmp_path, "apgd-ce", samples=30)
    assert (first["round"], first["labeled"], final["round"], final["labeled"]) == (0, 30, 1, 60)
    # round 0's kept model is round 0's model: its clean accuracy on the first 30 test points
    model, _, _ = load_checkpoint(tmp_path / "checkpoint-round-00.pt")
    assert first["clean_accuracy"] == evaluate(model, digits.test.subset(slice(0, 30)), torch.device("cpu")).clean_accuracy
    final_model, _, _ = load_checkpoint(tmp_path)
    assert not all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), final_model.state_dict().values()))
    with pytest.raises(ConfigError, match=r"no checkpoint of round 5 \(kept rounds: 0, 1\)"):
        evaluate_run(tmp_path, "apgd-ce", samples=30, round_number=5)
    assert len(result.records) == 2


def test_a_study_with_an_evaluate_section_attacks_every_final_model_as_part_of_the_run(tmp_path):
    from robustal.experiments.evaluate import needs_evaluation
    from robustal.experiments.store import run_directory

    data = tiny_spec({"acquisition": ["random", "entropy"]}, budget=60, epochs=1)
    plain = run_study(StudySpec.from_dict(data), tmp_path, workers=1, threads=1)
    assert set(plain.states.values()) == {"done"}
    spec = StudySpec.from_dict({**data, "evaluate": {"attacks": "apgd-ce", "n": 30}})
    run_ids = [config.run_id() for config in spec.expand()]
    assert all(needs_evaluation(run_directory(tmp_path, r), spec.evaluate) for r in run_ids)
    # the same study with the section: finished runs are evaluated (resumed, not recomputed)
    rounds_before = study_results(tmp_path, "rounds")
    report = run_study(spec, tmp_path, workers=1, threads=1)
    assert set(report.states.values()) == {"done"}
    assert not any(needs_evaluation(run_directory(tmp_path, r), spec.evaluate) for r in run_ids)
    final = study_results(tmp_path, "final")
    assert final["autoattack_robust_accuracy"].notna().all() and (final["autoattack_samples"] == 30).all()
    rounds_after = study_results(tmp_path, "rounds")
    assert rounds_after["robust_accuracy"].tolist() == rounds_before["robust_accuracy"].tolist()
    again = run_study(spec, tmp_path, workers=1, threads=1)
    assert set(again.states.values()) == {"skipped"}


@pytest.mark.parametrize(
    "section, message",
    [({"attacks": "pgd"}, "evaluate.attacks: unknown AutoAttack attack 'pgd'"), ({"n": 0}, "evaluate.n must be"),
     ({"budget": 3}, "unknown key 'budget' in `evaluate`")],
)  # fmt: skip
def test_a_bad_evaluate_section_is_refused_before_anything_runs(section, message):
    with pytest.raises(ConfigError, match=message):
        StudySpec.from_dict({**tiny_spec(), "evaluate": section})


def test_an_l2_run_is_evaluated_by_autoattack_under_l2(tmp_path, digits):
    # eps 1.0 in L-inf allows any image (robust accuracy 0); in L2 it is a small ball
    config = make_config(**tiny_settings(epochs=2, norm="l2", eps=1.0, step_size=0.25, test_size=40))
    run_active_learning(config, tmp_path, dataset=digits)
    stored, _ = evaluate_run(tmp_path, "apgd-ce", samples=40)
    assert stored["norm"] == "L2" and stored["eps"] == 1.0
    assert 0 < stored["robust_accuracy"] <= stored["pgd_robust_accuracy"]  # PGD is L2 too: not stronger than APGD
    model, _, _ = load_checkpoint(tmp_path)
    linf = autoattack_accuracy(model, digits.test.subset(slice(0, 40)), 1.0, torch.device("cpu"), ("apgd-ce",), norm="linf")
    assert linf.robust_accuracy == 0.0
    with pytest.raises(ConfigError, match="unknown norm 'l1'"):
        autoattack_accuracy(model, digits.test.subset(slice(0, 4)), 1.0, torch.device("cpu"), norm="l1")


def test_autoattack_attacks_the_runs_folded_fp32_model_with_the_plain_models_result(tmp_path, digits, monkeypatch):
    config = make_config(**tiny_settings(epochs=3, eps=0.1, lr=0.01, channels_last=True, fold_batchnorm=True))
    run_active_learning(config, tmp_path, dataset=digits)
    attacked = []
    real = evaluate_module.autoattack_accuracy
    monkeypatch.setattr(evaluate_module, "autoattack_accuracy", lambda model, *a, **k: attacked.append(model) or real(model, *a, **k))
    stored, _ = evaluate_run(tmp_path, "apgd-ce,apgd-t", samples=60)
    # the view with BatchNorm folded into the convolutions, in fp32
    assert isinstance(attacked[0], torch.fx.GraphModule)
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in attacked[0].modules())
    assert stored["execution"] == {"precision": "fp32", "channels_last": True, "fold_batchnorm": True}
    # the same numbers as the plain model's, up to float rounding (at most 2 of the 60 points)
    model, _, _ = load_checkpoint(tmp_path)
    seed = derive_seed(config.seed, "autoattack") % 2**31
    plain = autoattack_accuracy(model, digits.test.subset(slice(0, 60)), config.eps, torch.device("cpu"), ATTACKS, seed)
    assert stored["clean_accuracy"] == plain.clean_accuracy
    assert abs(stored["robust_accuracy"] - plain.robust_accuracy) <= 2 / 60
    assert 0 < plain.robust_accuracy < plain.clean_accuracy


def test_a_run_that_starts_over_sets_its_earlier_evaluations_aside(robust_run, tmp_path, digits):
    run = tmp_path / "run"
    shutil.copytree(robust_run, run)
    first, _ = evaluate_run(run, "apgd-ce", samples=20)
    (run / "checkpoint.pt").unlink()  # as committed results are: no checkpoint, so the run starts over
    run_active_learning(read_run_config(run), run, dataset=digits)
    kept = run / ("earlier-" + evaluation_file(run, ("apgd-ce",), 20).name)
    assert json.loads(kept.read_text()) == first  # kept, under a name nothing reads
    assert not evaluation_file(run, ("apgd-ce",), 20).exists()
    again, computed = evaluate_run(run, "apgd-ce", samples=20)  # the new model is attacked afresh
    assert computed and again["run_id"] == first["run_id"]
