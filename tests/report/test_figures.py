"""Figures people can read: a fixed, distinct style per acquisition function in every figure,
the entropy panels wrapped into a grid, the class-balance color bar within 0-100 %."""

from __future__ import annotations

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from robustal.acquisition import available_acquisitions
from robustal.report.curves import learning_curves_figure
from robustal.report.figures import class_balance_figure, entropy_distributions_figure
from robustal.report.styles import function_style

VARIANT = "dre (quota=proportional)"  # a function with options, as the report labels it


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def style_key(style: dict[str, str]) -> tuple[str, str, str]:
    return matplotlib.colors.to_hex(style["color"]), style["linestyle"], style["marker"]


def test_every_registered_function_has_its_own_color_and_marker():
    functions = available_acquisitions()
    assert len(functions) == 16
    styles = [style_key(function_style(name)) for name in functions]
    assert len({color for color, _, _ in styles}) == len(functions)
    assert len({marker for _, _, marker in styles}) == len(functions)
    assert len(set(styles)) == len(functions)


def test_a_function_with_options_keeps_its_color_but_not_its_line():
    plain, variant = function_style("dre"), function_style(VARIANT)
    assert variant["color"] == plain["color"]
    assert variant["linestyle"] != plain["linestyle"] and variant["marker"] != plain["marker"]
    assert style_key(variant) not in {style_key(function_style(name)) for name in available_acquisitions()}
    assert function_style(VARIANT) == variant  # fixed, not drawn from a cycle


def learning_curve_rounds(functions: list[str]) -> pd.DataFrame:
    return pd.DataFrame([
        {"acquisition": name, "labeled": labeled, "clean_accuracy": 0.5, "robust_accuracy": 0.2}
        for name in functions for labeled in (100, 200)
    ])  # fmt: skip


def entropy_rows(functions: list[str], regimes: list[str]) -> pd.DataFrame:
    pool = np.full(20, 0.05)
    return pd.DataFrame([
        {"training": regime, "function": name, "pool": pool, "selected": pool, "distance_mean": 0.1}
        for regime in regimes for name in functions
    ])  # fmt: skip


def test_the_same_function_has_the_same_style_in_the_learning_curves_and_the_entropy_figure():
    curves_functions = [*available_acquisitions(), VARIANT]
    entropy_functions = ["dre", VARIANT, "random", "bald", "mcp"]  # another subset, another order
    curves = learning_curves_figure(learning_curve_rounds(curves_functions))
    curve_styles = {
        line.get_label(): (matplotlib.colors.to_hex(line.get_color()), line.get_linestyle())
        for line in curves.axes[1].get_lines()
    }
    assert set(curve_styles) == set(curves_functions)
    markers = {line.get_label(): line.get_marker() for line in curves.axes[1].get_lines()}
    assert len({(*curve_styles[name], markers[name]) for name in curves_functions}) == len(curves_functions)
    rows = entropy_rows(entropy_functions, ["pgd"])
    entropy = entropy_distributions_figure(rows, ["pgd"], ["robust AL"], entropy_functions)
    for axis in entropy.axes:
        if not axis.get_visible():
            continue
        function = axis.get_title().split("\n")[0]
        selected = next(patch for patch in axis.patches if patch.get_label() == "selected")
        assert (matplotlib.colors.to_hex(selected.get_edgecolor()), selected.get_linestyle()) == curve_styles[function]


def panel_shape(figure) -> tuple[int, int]:
    """(rows, columns) of the visible panels, from their positions."""
    visible = [axis for axis in figure.axes if axis.get_visible()]
    rows = {round(axis.get_position().y0, 3) for axis in visible}
    columns = {round(axis.get_position().x0, 3) for axis in visible}
    return len(rows), len(columns)


@pytest.mark.parametrize("regimes, shape", [(["pgd"], (3, 4)), (["standard", "pgd"], (6, 4))])
def test_the_entropy_figure_wraps_twelve_functions_into_rows_of_four(regimes, shape):
    functions = available_acquisitions()[:12]
    figure = entropy_distributions_figure(entropy_rows(functions, regimes), regimes, regimes, functions)
    assert sum(axis.get_visible() for axis in figure.axes) == 12 * len(regimes)
    assert panel_shape(figure) == shape


def test_the_entropy_figure_hides_the_empty_places_of_a_short_last_row():
    functions = available_acquisitions()[:6]
    figure = entropy_distributions_figure(entropy_rows(functions, ["pgd"]), ["pgd"], ["pgd"], functions)
    assert len(figure.axes) == 8 and sum(axis.get_visible() for axis in figure.axes) == 6
    assert panel_shape(figure) == (2, 4)


def test_the_class_balance_color_bar_runs_from_0_percent_and_is_white_at_the_uniform_share():
    skewed = np.array([0.4, *[0.6 / 9] * 9])  # one class 4x the uniform 10 %
    balance = pd.DataFrame([
        {"training": "pgd", "function": "entropy", "shares": skewed},
        {"training": "pgd", "function": "random", "shares": np.full(10, 0.1)},
    ])  # fmt: skip
    figure = class_balance_figure(balance, ["pgd"], ["robust AL"], ["random", "entropy"])
    (image,) = [image for axis in figure.axes for image in axis.images]
    assert image.norm.vmin == 0.0 and image.norm.vmax == pytest.approx(40.0)
    low, high = sorted(image.colorbar.ax.get_ylim())
    assert low >= 0.0 and high == pytest.approx(40.0)
    assert image.norm(10.0) == pytest.approx(0.5)  # the middle (white) of RdBu_r


def test_the_learning_curve_legend_lists_the_functions_of_every_panel(tmp_path, monkeypatch):
    import matplotlib.figure

    from robustal.report.curves import plot_learning_curve_panels

    saved = []
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda figure, *args, **kwargs: saved.append(figure))
    rows = pd.concat([
        learning_curve_rounds(["random", "dre"]).assign(training="standard"),  # standard AL: fewer functions
        learning_curve_rounds(["random", "dre", "kcenter", VARIANT]).assign(training="pgd"),
    ]).rename(columns={"acquisition": "function"})  # fmt: skip
    functions = ["random", "dre", VARIANT, "kcenter"]
    plot_learning_curve_panels(rows, tmp_path / "curves.png", ["standard", "pgd"], ["standard", "robust"], functions)
    (legend,) = saved[0].legends
    assert [text.get_text() for text in legend.get_texts()] == functions
