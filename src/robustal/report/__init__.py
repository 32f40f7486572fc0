"""Reports: tables and plots of active-learning results."""

from robustal.report.curves import plot_learning_curves

__all__ = ["plot_learning_curves"]
