"""The bench: grids, the paper's best-run selection on hand-made rows with known winners, plots rendered to
readable PNGs, a killed sweep that resumes without re-running finished runs, and the report end to end."""

import json
import math
import shutil

import pytest

from hf_memmit.bench import (
    Setting,
    best_regularizer_configs,
    best_runs,
    method_grid,
    pareto_front,
    percent_diff,
    plot_tradeoff,
    plot_training_curves,
    plot_wall_time,
    read_runs,
    sweep_setting,
    unlearning_score,
    write_report,
)
from hf_memmit.bench.plots import save_png
from hf_memmit.bench.results import append_run, write_setting


def run(method, mem_after, quality_after, seconds=1.0, mem_before=0.5, quality_before=0.9, key="accuracy", **extra):
    return {"method": method, "seconds": seconds, "status": "ok",
            "before": {"memorized": mem_before, key: quality_before},
            "after": {"memorized": mem_after, key: quality_after}, **extra}


# --- grids -------------------------------------------------------------------------------------------------------

def test_paper_grid_follows_the_paper():
    assert {o["ratio"] for o in method_grid("durable", "paper", "math", 4)} == {1e-5, 1e-4, 1e-3, 1e-2, 0.05}
    subnet = method_grid("balanced_subnet", "paper", "math", 4)
    assert len(subnet) == 11 * 3 and {o["epochs"] for o in subnet} == {1, 10, 30}
    assert {o["ig_steps"] for o in method_grid("ig", "paper", "math", 4)} == {1, 10, 20}
    assert method_grid("ig", "paper", "math", 16) == []
    assert max(o["ratio"] for o in method_grid("greedy", "paper", "language", 4)) == 1e-2
    assert max(o["ratio"] for o in method_grid("greedy", "paper", "math", 4)) == 0.05
    with pytest.raises(ValueError, match="grid='huge'"):
        method_grid("act", "huge", "math", 4)


def test_quick_grid_takes_the_paper_values_plus_three_epochs_of_subnet():
    for method in ("act", "slim", "zero", "greedy", "durable", "balanced_subnet"):
        paper = method_grid(method, "paper", "math", 4)
        for options in method_grid(method, "quick", "math", 4):
            if method == "balanced_subnet" and options["epochs"] == 3:
                options = {**options, "epochs": 1}
            assert any(all(p.get(k) == v for k, v in options.items()) for p in paper), (method, options)
    assert {o["epochs"] for o in method_grid("balanced_subnet", "quick", "math", 4)} == {1, 3, 10}
    assert {o["epochs"] for o in method_grid("slim", "quick", "math", 4)} == {1, 10}


# --- selection ---------------------------------------------------------------------------------------------------

def test_percent_diff():
    assert percent_diff(0.25, 0.5) == -50.0
    assert percent_diff(0.0, 0.0) == 0.0
    assert percent_diff(1.0, 0.0) == math.inf


def test_math_selection_is_argmin_of_m_minus_a():
    rows = [run("act", 0.0, 0.45), run("act", 0.25, 0.9), run("act", 0.5, 0.9), run("hc", 0.1, 0.88)]
    # act: -100 - (-50) = -50;  -50 - 0 = -50 (a tie);  0 - 0 = 0
    best = best_runs(rows, "math")
    assert [r["after"]["memorized"] for r in best["act"]] == [0.0, 0.25]
    assert unlearning_score(best["hc"][0], "math") == pytest.approx(-80 + 100 * 0.02 / 0.9)


def test_language_selection_penalizes_runs_that_remove_nothing():
    key = "perplexity"
    rows = [run("zero", 0.5, 50.0, key=key, quality_before=50.0),     # M = 0, P = 0  -> 100
            run("zero", 0.0, 140.0, key=key, quality_before=50.0),    # M = -100, P = 180 -> 80
            run("slim", 0.5, 50.0, key=key, quality_before=50.0),     # 100
            run("slim", 0.25, 160.0, key=key, quality_before=50.0)]   # -50 + 220 = 170
    best = best_runs(rows, "language")
    assert best["zero"][0]["after"]["perplexity"] == 140.0
    assert best["slim"][0]["after"]["perplexity"] == 50.0


def test_inclusion_by_extra_ft_time_with_fallback():
    rows = [run("ig", 0.0, 0.9, seconds=500.0), run("ig", 0.4, 0.9, seconds=5.0),
            run("greedy", 0.0, 0.9, seconds=300.0), run("greedy", 0.1, 0.9, seconds=200.0)]
    best = best_runs(rows, "math", budget_seconds=60.0)
    assert best["ig"][0]["seconds"] == 5.0              # the better run is over budget
    assert best["greedy"][0]["after"]["memorized"] == 0.0  # none within budget: all count
    assert best_runs(rows, "math")["ig"][0]["seconds"] == 500.0


def test_failed_runs_are_never_selected():
    rows = [run("sou", 0.0, 0.9, status="error"), run("sou", 0.4, 0.9)]
    assert best_runs(rows, "math")["sou"][0]["after"]["memorized"] == 0.4


def test_regularizer_selection_averages_seeds():
    rows = [{"regularizer": "spectral_norm", "config": {"lam": 0.01}, "memorized": m, "accuracy": a}
            for m, a in ((0.0, 0.90), (0.1, 0.96))]
    rows += [{"regularizer": "spectral_norm", "config": {"lam": 0.1}, "memorized": 0.0, "accuracy": 0.91}
             for _ in range(2)]
    best = best_regularizer_configs(rows, "math")
    # lam 0.01: 93 - 5 = 88; lam 0.1: 91 - 0 = 91
    assert [b["config"] for b in best["spectral_norm"]] == [{"lam": 0.1}]
    lang = [{"regularizer": "loss_truncation", "config": {"dropc": d}, "memorized": m, "perplexity": p}
            for d, m, p in ((0.1, 0.1, 60.0), (0.4, 0.0, 75.0))]
    assert [b["config"] for b in best_regularizer_configs(lang, "language")["loss_truncation"]] == [{"dropc": 0.1}]


def test_pareto_front():
    pts = [(0.0, 80.0), (10.0, 95.0), (5.0, 70.0), (20.0, 96.0), (30.0, 90.0)]
    assert pareto_front(pts, higher_is_better=True) == [(0.0, 80.0), (10.0, 95.0), (20.0, 96.0)]
    assert pareto_front([(0.0, 900.0), (5.0, 60.0), (1.0, 1000.0)], higher_is_better=False) == [(0.0, 900.0),
                                                                                                    (5.0, 60.0)]


# --- plots ---------------------------------------------------------------------------------------------------------

def _readable_png(path):
    from matplotlib.image import imread

    img = imread(path)
    assert img.shape[0] >= 300 and img.shape[1] >= 500, img.shape
    assert img[..., :3].std() > 0.05  # not blank


def _axis_labels(fig):
    ax = fig.axes[0]
    return ax.get_xlabel(), ax.get_ylabel()


@pytest.mark.parametrize("key", ["accuracy", "perplexity"])
def test_tradeoff_plot_renders(tmp_path, key):
    rows = [run(m, mem, q, key=key, quality_before=0.9 if key == "accuracy" else 60.0)
            for m, mem, q in (("act", 0.0, 0.8 if key == "accuracy" else 90.0), ("act", 0.2, 0.9 if key == "accuracy" else 61.0),
                              ("hc", 0.3, 0.85 if key == "accuracy" else 70.0))]
    fig = plot_tradeoff(rows, best_runs(rows, "math" if key == "accuracy" else "language"), key, "fixture")
    xlabel, ylabel = _axis_labels(fig)
    assert "memorized" in xlabel and "%" in xlabel and key in ylabel
    assert {t.get_text() for t in fig.axes[0].get_legend().get_texts()} >= {"act", "hc", "Pareto front",
                                                                             "unedited model"}
    save_png(fig, tmp_path / "t.png")
    _readable_png(tmp_path / "t.png")


def test_training_curve_and_time_plots_render(tmp_path):
    curve = [{"epoch": e, "memorized": m, "memorized_dup0": 0.0, "memorized_dup2": m} for e, m in
             ((1, 0.0), (2, 0.4), (3, 0.9))]
    fig = plot_training_curves({"s0": curve, "s1": [{"epoch": 1, "memorized": 0.1}]}, "fixture")
    assert _axis_labels(fig) == ("training epoch", "memorized artifact rows (%)")
    assert len(fig.axes[0].get_lines()) == 3  # two duplication classes of s0, one line for s1
    save_png(fig, tmp_path / "c.png")
    _readable_png(tmp_path / "c.png")
    fig = plot_wall_time({"act": 0.2, "balanced_subnet": 19.0, "zero": 190.0}, 25.0, "fixture")
    xlabel, ylabel = _axis_labels(fig)
    assert "seconds" in xlabel and ylabel == "method"
    save_png(fig, tmp_path / "w.png")
    _readable_png(tmp_path / "w.png")


# --- sweep: resume after a kill ----------------------------------------------------------------------------------

class Killed(BaseException):
    pass


def test_killed_sweep_resumes_without_rerunning(tmp_path):
    setting = Setting("math", "noise", n_layer=4, seed=0)
    calls = []

    def runner(run_dir, method, options, retain_size, seed):
        if len(calls) == 3:
            raise Killed  # the process dies in the middle of the fourth run
        calls.append((method, json.dumps(options, sort_keys=True)))
        return run(method, 0.1, 0.9)

    with pytest.raises(Killed):
        sweep_setting(tmp_path, setting, ["durable", "act"], "quick", runner=runner, log=lambda _: None)
    assert len(read_runs(tmp_path)) == 3
    with open(tmp_path / "runs.jsonl", "a") as f:
        f.write('{"torn": ')  # a line the kill cut in half
    first = list(calls)
    calls.clear()
    ran = sweep_setting(tmp_path, setting, ["durable", "act"], "quick", runner=lambda *a: (calls.append(a[1:3]),
                        run(a[1], 0.1, 0.9))[1], log=lambda _: None)
    total = len(method_grid("durable", "quick", "math", 4)) + len(method_grid("act", "quick", "math", 4))
    assert ran == total - 3 == len(calls)
    assert not {(m, json.dumps(o, sort_keys=True)) for m, o in calls} & set(first)
    keys = [r["key"] for r in read_runs(tmp_path)]
    assert len(keys) == len(set(keys)) == total
    assert sweep_setting(tmp_path, setting, ["durable", "act"], "quick", runner=None, log=lambda _: None) == 0


def test_act_and_ig_score_the_suffix_after_the_prompt(tmp_path):
    seen = []
    sweep_setting(tmp_path, Setting("math", "noise"), ["act", "durable"], "quick",
                  runner=lambda d, m, o, *_: (seen.append((m, o)), run(m, 0.1, 0.9))[1], log=lambda _: None)
    assert all(o["prefix_len"] == 50 for m, o in seen if m == "act")
    assert all("prefix_len" not in o for m, o in seen if m == "durable")


# --- report end to end on a model that really memorized ---------------------------------------------------------

@pytest.mark.slow
def test_bench_and_report_on_the_trained_tiny_model(tiny_trained, tmp_path):
    from click.testing import CliRunner

    from hf_memmit.bench import prepare_setting
    from hf_memmit.bench.results import model_dir
    from hf_memmit.cli import main

    _, _, run_dir = tiny_trained
    setting = Setting("math", "backdoor", n_layer=2, seed=0, profile="tiny")
    shutil.copytree(run_dir, model_dir(tmp_path, setting.name))
    record = prepare_setting(tmp_path, setting, extra_ft_epochs=0.5, log=lambda _: None)
    assert record["budget_seconds"] == pytest.approx(record["extra_ft"]["seconds"] * 10)
    sweep_setting(tmp_path, setting, ["durable", "act"], "quick", retain_size=200, log=lambda _: None)
    rows = read_runs(tmp_path)
    assert len(rows) == 5 and all(r["status"] == "ok" for r in rows)
    assert any(r["after"]["memorized"] < r["before"]["memorized"] for r in rows)
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "report.md").read_text()
    assert "| durable |" in md and "| act |" in md and "| extra_ft |" in md and "paper: memorized" in md
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["tables"][0]["winner"] in ("durable", "act")
    for png in report["plots"]:
        _readable_png(png)


def test_report_on_a_folder_without_a_bench_is_one_line(tmp_path):
    from click.testing import CliRunner

    from hf_memmit.cli import main

    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 1 and "no bench settings" in result.output and "Traceback" not in result.output


def test_report_tables_from_written_results(tmp_path):
    """The report reads only the results files: a setting record and runs written by hand give the table."""
    setting = Setting("math", "noise", n_layer=4, seed=0)
    before = {"memorized": 0.5, "accuracy": 0.9}
    write_setting(tmp_path, setting.name, {"setting": setting.to_dict(), "name": setting.name, "group": setting.group,
                                           "before": before, "budget_seconds": 10.0,
                                           "extra_ft": {"epochs": 5, "seconds": 10.0, "rows": 9,
                                                        "after": {"memorized": 0.0, "accuracy": 0.9}}})
    d = tmp_path / "models" / setting.name
    d.mkdir(parents=True)
    (d / "tinymem.json").write_text(json.dumps({"curve": [{"epoch": 1, "memorized": 0.5}]}))
    for r in (run("act", 0.0, 0.6, options={"ratio": 0.05}), run("balanced_subnet", 0.0, 0.89, options={"ratio": 0.1}),
              run("balanced_subnet", 0.0, 0.9, seconds=50.0, options={"ratio": 0.3})):
        append_run(tmp_path, {**r, "setting": setting.name, "key": json.dumps(r["options"]) + r["method"]})
    report = write_report(tmp_path)
    table = report["tables"][0]
    assert table["winner"] == "balanced_subnet"
    bs = next(r for r in table["rows"] if r["method"] == "balanced_subnet")
    assert bs["quality_after"] == pytest.approx(89.0)  # the 0.9 run is over the 10 s budget
    assert "| balanced_subnet | 0.00 | 89.00 |" in (tmp_path / "report.md").read_text()
