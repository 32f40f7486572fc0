"""The report's settings section: the exact settings behind every number (attacks, protocol,
preset, seeds, library versions) and the list of runs the page is made of."""

from __future__ import annotations

import json
from typing import Any

import yaml

from robustal.report.markup import heading, paragraph, preformatted
from robustal.report.results import FUNCTION, StudyResults, varying_settings
from robustal.report.tables import Cell, format_mean_std, render_table


def _text(value: Any) -> str:
    if value is None:
        return "None (default)"
    return json.dumps(value, sort_keys=True) if isinstance(value, (dict, list)) else str(value)


def _sizes(value: Any, what: str) -> str:
    if value is None:
        return f"all {what}"
    return f"the first {value} {what}" if isinstance(value, int) else f"{value} {what}"


def protocol_sentences(settings: dict[str, Any]) -> list[str]:
    """How accuracy and robustness were measured and how each round trained, from the
    `settings` shared by the runs (a setting missing from them reads "(differs by run)")."""

    def get(key: str) -> Any:
        return settings[key] if key in settings else "(differs by run)"

    return [
        f"Accuracy: clean accuracy on {_sizes(get('test_size'), 'test images')}. Robustness: accuracy on "
        f"PGD-{get('eval_steps')} adversarial examples of the same images (L-inf, eps {get('eps')}, "
        f"step {get('step_size')}, random start).",
        f"Each round trains {get('epochs')} epochs (optimizer {get('optimizer')}, lr {get('lr')}, "
        f"batch {get('batch_size')}); PGD training uses PGD-{get('train_steps')} with the same eps "
        f"and step; the best epoch is kept by validation robustness (adversarial training) or accuracy (standard "
        f"training) on {_sizes(get('validation_size'), 'validation images')}. Labels: {get('initial')} "
        f"random, then {get('per_round')} per round up to {get('budget')}.",
    ]


def settings_section(results: StudyResults) -> list[str]:
    """The HTML parts of the settings section."""
    run_ids = results.finished_run_ids
    settings = {run_id: results.settings[run_id] for run_id in run_ids}
    varying = varying_settings(settings, run_ids)
    shared = {key: value for key, value in settings[run_ids[0]].items() if key not in varying}
    others = results.status[~results.status["run_id"].isin(run_ids)]
    left_out = ", ".join(f"{count} {state}" for state, count in others["state"].value_counts().items())
    parts = [
        paragraph(
            f"Every number on this page comes from the {len(run_ids)} finished runs listed below (files in "
            f"{results.study_dir}/runs/<run id>/)"
            + (f"; runs not finished are left out ({left_out})." if left_out else ".")
        )
    ]
    parts += [paragraph(sentence) for sentence in protocol_sentences(shared)]
    preset = results.spec.get("settings", {}).get("preset")
    parts.append(paragraph(f"Preset: {preset}." if preset else "Preset: none (every setting is in the spec)."))
    parts += [heading("Study spec (study.yaml)"), preformatted(yaml.safe_dump(results.spec, sort_keys=False))]
    parts += [heading("Settings shared by every run"), _key_value_table(shared, "settings-shared")]
    if varying:
        values = {key: ", ".join(sorted({_text(s.get(key)) for s in settings.values()})) for key in varying}
        parts += [heading("Settings that differ between runs"), _key_value_table(values, "settings-varying")]
    parts += [heading("Library versions"), _versions_table(results, run_ids)]
    parts += [heading("Runs"), _runs_table(results, varying)]
    return parts


def _key_value_table(values: dict[str, Any], table_id: str) -> str:
    header = [[Cell("setting", header=True), Cell("value", header=True)]]
    body = [[Cell(key, header=True), Cell(_text(value))] for key, value in values.items()]
    return render_table(header, body, table_id)


def _versions_table(results: StudyResults, run_ids: list[str]) -> str:
    combinations: dict[str, int] = {}
    for run_id in run_ids:
        key = json.dumps(results.configs[run_id].get("versions", {}), sort_keys=True)
        combinations[key] = combinations.get(key, 0) + 1
    names = sorted({name for key in combinations for name in json.loads(key)})
    header = [[Cell(name, header=True) for name in names] + [Cell("runs", header=True)]]
    body = [
        [Cell(json.loads(key).get(name, "?")) for name in names] + [Cell(str(count), classes=("number",))]
        for key, count in combinations.items()
    ]
    return render_table(header, body, "versions", "Versions the runs recorded (config.json of each run).")


def _runs_table(results: StudyResults, varying: list[str]) -> str:
    extra = [key for key in varying if key not in ("acquisition", "acquisition_options", "training", "seed")]
    columns = ["run id", *extra, FUNCTION, "training", "seed", "rounds", "labeled", "accuracy (%)", "robustness (%)"]
    header = [[Cell(column, header=True) for column in columns]]
    body = []
    runs = results.rounds.sort_values([FUNCTION, "training", "seed", "round"]).groupby("run_id", sort=False)
    for run_id, run in runs:
        last = run.iloc[-1]
        settings = results.settings[run_id]
        body.append(
            [Cell(run_id)]
            + [Cell(_text(settings.get(key))) for key in extra]
            + [Cell(str(last[FUNCTION])), Cell(str(last["training"])), Cell(str(last["seed"]))]
            + [Cell(str(len(run)), classes=("number",)), Cell(str(last["labeled"]), classes=("number",))]
            + [
                Cell(format_mean_std(last[m], float("nan")), classes=("number",), value=float(last[m]))
                for m in ("clean_accuracy", "robust_accuracy")
            ]
        )
    caption = "Each finished run: its id (runs/<id>/ in the study), settings and final metrics."
    return render_table(header, body, "runs", caption)
