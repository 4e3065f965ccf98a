"""The paper's comparison on your own settings (Sakarvadia et al. 2025, "Mitigating Memorization in Language
Models", Section 6 and Appendix A.3): sweeps over each method's grid, best-run selection, tables and plots."""

from .grids import GRIDS, method_grid
from .plots import pareto_front, plot_tradeoff, plot_training_curves, plot_wall_time
from .report import write_report
from .results import read_runs
from .selection import best_regularizer_configs, best_runs, percent_diff, unlearning_score
from .settings import KINDS, SUITES, Setting, suite_settings
from .sweep import prepare_setting, run_bench, sweep_setting

__all__ = [
    "GRIDS", "KINDS", "SUITES", "Setting", "best_regularizer_configs", "best_runs", "method_grid", "pareto_front",
    "percent_diff", "plot_tradeoff", "plot_training_curves", "plot_wall_time", "prepare_setting", "read_runs",
    "run_bench", "suite_settings", "sweep_setting", "unlearning_score", "write_report",
]
