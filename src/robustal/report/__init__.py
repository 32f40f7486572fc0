"""Reports: tables and plots of active-learning results, and the HTML report of a study
(`write_report`, ``robustal report STUDY_DIR -o OUT``)."""

from robustal.report.curves import plot_learning_curves
from robustal.report.page import render_report, write_report
from robustal.report.results import StudyResults, load_study_results

__all__ = ["StudyResults", "load_study_results", "plot_learning_curves", "render_report", "write_report"]
