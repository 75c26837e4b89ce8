"""`python -m analysis` end to end on the synthetic study on disk: in a subprocess for the main
paths and representative errors, in-process (`main(argv)`, same code) for the rest, to stay fast."""

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.cli import main
from analysis.commands import COMMANDS

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120)


def ok(*args) -> str:
    result = cli(*args)
    assert (result.returncode, result.stderr) == (0, "")
    return result.stdout


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def cells(line: str) -> list[str]:
    return re.split(r"\s{2,}", line.strip())


def test_frontier_prints_the_front_and_writes_table_and_chart(study, tmp_path):
    out = ok("frontier", study, "--test-set", "1200K", "--out", tmp_path / "figures")
    lines = out.splitlines()
    assert lines[0] == "Pareto front: 3 of 17 rows, minimising wall_time_s and force_rmse_mev_a"
    assert [line.split()[1] for line in lines[3:6]] == ["lamb_lr0.001_s0", "adam_lr0.001_s0", "adamw_lr0.001_s0"]
    files = {p.name: p for p in (tmp_path / "figures").iterdir()}
    assert set(files) == {f"frontier.{ext}" for ext in ("csv", "md", "tex", "html", "png")}
    assert lines[6:] == [f"wrote {tmp_path / 'figures' / name}" for name in
                         ("frontier.csv", "frontier.md", "frontier.tex", "frontier.html", "frontier.png")]
    png = files["frontier.png"].read_bytes()
    assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert "vega" in files["frontier.html"].read_text()
    assert pd.read_csv(files["frontier.csv"])["force_rmse_mev_a"].tolist() == [100.0, 80.0, 72.0]


def test_frontier_without_a_test_set_draws_one_panel_per_test_set(study, tmp_path):
    out = ok("frontier", study, "--out", tmp_path / "figures")
    assert out.splitlines()[0].startswith("Pareto fronts, one per test set: ")
    front = pd.read_csv(tmp_path / "figures" / "frontier.csv")
    assert front["test_set"].drop_duplicates().tolist() == ["val", "300K", "1200K"]
    assert front[front["test_set"] == "1200K"]["force_rmse_mev_a"].tolist() == [100.0, 80.0, 72.0]
    assert '"concat"' in (tmp_path / "figures" / "frontier.html").read_text()


def test_table_text_marks_best_two(study):
    out = ok("table", study, "--lr", "1e-3", "--metric", "force_rmse_mev_a")
    lines = out.splitlines()
    assert lines[0] == "Force RMSE (meV/Å): mean (std) over seeds; ** best, * second best"
    assert cells(lines[1]) == ["optimizer", "val", "300K", "1200K"]
    rows = {cells(line)[0]: cells(line)[1:] for line in lines[3:]}
    assert rows["adamw"] == ["37.00 (1.00) **", "44.20 (1.00) **", "73.00 (1.00) **"]  # 36 * factor + mean seed
    assert rows["adam"] == ["41.00 (1.00) *", "49.00 (1.00) *", "81.00 (1.00) *"]
    assert rows["lamb"] == ["50.50 (0.71)", "60.50 (0.71)", "100.50 (0.71)"]  # seed 2 diverged


def test_table_latex_and_lbfgs_csv(study):
    latex = ok("table", study, "--by", "optimizer,lr", "--format", "latex", "--digits", "1")
    assert r"adamw & 0.001 & \textbf{37.0 (1.0)}" in latex and latex.count(r"\end{tabular}") == 2
    gain = pd.read_csv(io.StringIO(ok("lbfgs", study, "--format", "csv")))
    assert gain.groupby("optimizer")["improved"].all().to_dict() == {"adam": True, "adamw": False}
    assert gain["change_pct"].round(6).tolist() == [-10.0] * 3 + [5.0] * 3


def test_sql(study):
    answer = ok("sql", study, "-q", "SELECT count(*) AS n FROM curves WHERE stage = 'lbfgs'")
    assert answer.split() == ["n", "--", "16"]


@pytest.mark.parametrize("args, message", [
    (["table", "{empty}"], "no scores results in {empty}: expected {empty}/results/scores*.parquet"),
    (["frontier", "{study}", "--test-set", "900K"], "no rows with test_set in [900K]; available: val, 300K, 1200K"),
    (["table", "{study}", "--lr", "fast"], "argument --lr: not a comma-separated list of numbers"),
])
def test_errors_are_one_line_and_exit_2(study, tmp_path, args, message):
    fill = {"study": study, "empty": tmp_path}
    result = cli(*(arg.format(**fill) for arg in args))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == f"error: {message.format(**fill)}" + (
        "" if "argument" not in message else ": 'fast' (see python -m analysis table --help)") + "\n"


@pytest.mark.parametrize("args, message", [
    (["frontier", "{study}", "--test-set", "val", "--y", "virial"], "'virial' is not a column; numeric columns:"),
    (["table", "{study}", "--optimizer", "sgd"], "no rows with optimizer in [sgd]; available: adam, adamw, lamb"),
    (["table", "{study}"], "lr varies within a group"),
    (["table", "{study}", "--lr", "1e-3", "--metric", "force"], "'force' is not a column"),
    (["improvement", "{study}", "--lr", "1e-3", "--baseline", "sgd"], "optimizers: adam, adamw, lamb"),
    (["lbfgs", "{study}", "--optimizer", "lamb"], "no 'ok' lbfgs rows; stages present: first_order"),
    (["curves", "{study}", "--y", "grad_norm", "--stage", "first_order"], "'grad_norm' holds no values"),
    (["sql", "{study}", "-q", "SELECT nope FROM scores"], "query failed:"),
    (["table", "{study}", "--lr", "1e-3", "--out", "{file}"], "cannot write to {file}"),
])
def test_more_errors_in_process(capsys, study, tmp_path, args, message):
    fill = {"study": study, "file": tmp_path / "a_file"}
    fill["file"].write_text("")
    code, out, err = run_main(capsys, *(arg.format(**fill) for arg in args))
    assert (code, out) == (2, "")
    assert err.startswith("error: ") and err.count("\n") == 1 and message.format(**fill) in err, err


def test_other_formats_and_outputs_in_process(capsys, study, tmp_path):
    code, markdown, _ = run_main(capsys, "table", study, "--lr", "1e-3", "--metric", "force_rmse_mev_a",
                                 "--format", "markdown")
    assert code == 0 and "| adamw | **37.00 (1.00)** | **44.20 (1.00)** | **73.00 (1.00)** |" in markdown
    _, csv, _ = run_main(capsys, "table", study, "--by", "optimizer,lr", "--format", "csv")
    assert len(pd.read_csv(io.StringIO(csv))) == 3 * 2 * 3
    run_main(capsys, "table", study, "--lr", "1e-3", "--out", tmp_path / "table")
    assert {p.name for p in (tmp_path / "table").iterdir()} == {
        "table.csv", *(f"table_{m}.{e}" for m in ("energy_rmse_mev_atom", "force_rmse_mev_a") for e in ("md", "tex"))}


def test_improvement_and_curves_in_process(capsys, study, tmp_path):
    _, improvement, _ = run_main(capsys, "improvement", study, "--lr", "1e-3", "--format", "csv")
    pct = pd.read_csv(io.StringIO(improvement)).groupby("optimizer")["improvement_pct"]
    assert pct.min()["adamw"] > 0 and pct.max()["lamb"] < 0
    code, curves, _ = run_main(capsys, "curves", study, "--optimizer", "adam", "--out", tmp_path)
    assert code == 0 and "adam_lr0.001_s0_lbfgs" in curves
    assert (tmp_path / "curves.png").read_bytes().startswith(PNG_MAGIC)


def test_lr_marks_each_optimizers_best_lrs_and_says_which_lr_validation_chose(capsys, study, tmp_path):
    code, out, _ = run_main(capsys, "lr", study, "--test-set", "val,1200K", "--out", tmp_path)
    lines = out.splitlines()
    assert code == 0 and lines[0].endswith("** best, * second best lr of each optimizer")
    rows = {tuple(cells(line)[:2]): cells(line)[2:] for line in lines[3:9]}
    assert rows[("adam", "0.0001")] == ["61.00 (1.00) *", "121.00 (1.00) *"]  # `table` ranks it within 1e-4 instead
    assert rows[("lamb", "0.001")] == ["50.50 (0.71) **", "100.50 (0.71) **"]
    sensitivity = {tuple(cells(line)[:2]): cells(line)[2:] for line in lines[13:19]}
    assert sensitivity[("lamb", "1200K")] == ["2", "0.0001", "151.00", "0.001", "100.50", "0.0001", "151.00",
                                              "50.25", "50.25", "0.001"]
    assert "lr chosen on validation (force_rmse_mev_a on val): adamw 0.001 (the largest of its grid" in out
    assert pd.read_csv(tmp_path / "lr_sensitivity.csv")["test_set"].unique().tolist() == ["val", "1200K"]
    assert (tmp_path / "lr.png").read_bytes().startswith(PNG_MAGIC)
    _, table, _ = run_main(capsys, "table", study, "--by", "optimizer,lr", "--test-set", "val,1200K")
    assert table.splitlines()[0].endswith("second best within each lr") and table != out


def test_frontier_with_both_stages_on_total_wall_time(capsys, study):
    _, out, _ = run_main(capsys, "frontier", study, "--test-set", "val", "--stage", "first_order,lbfgs",
                         "--optimizer", "adam,lamb", "--x", "total_wall_time_s", "--format", "csv")
    front = pd.read_csv(io.StringIO(out))
    assert front["trial_id"].tolist() == ["lamb_lr0.001_s0", "adam_lr0.001_s0", "adam_lr0.001_s0_lbfgs"]
    assert front["total_wall_time_s"].tolist() == [60.0, 100.0, 120.0]  # L-BFGS: 20 s after its parent's 100 s


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert all(command in out for command in ("frontier", "table", "improvement", "lbfgs", "curves", "lr", "sql"))
    assert "storage/" not in out and "python -m analysis table results/lr_ablation --lr 1e-3" in out


@pytest.mark.parametrize("command", COMMANDS, ids=lambda command: command.name)
def test_every_command_has_a_working_help(capsys, command):
    """Each declared command builds its parser and prints its help: a module moved or renamed under a
    command breaks here, in process and fast, not in front of a user."""
    with pytest.raises(SystemExit) as exit_info:
        main([command.name, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and out.startswith(f"usage: python -m analysis {command.name} ")
    assert " ".join(command.help.split()) in " ".join(out.split())
    assert all(f"python -m analysis {command.name} {example}" in out for example in command.examples)


def test_command_names_are_unique_and_each_has_an_example():
    names = [command.name for command in COMMANDS]
    assert len(set(names)) == len(names) and all(command.examples for command in COMMANDS)


# Verdicts with confidence
def test_compare_gives_verdicts_and_reads_the_p_floor(capsys, study, tmp_path):
    code, out, _ = run_main(capsys, "compare", study, "--baseline", "adam", "--out", tmp_path)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("Force RMSE (meV/Å): optimizer - baseline over paired seeds")
    assert lines[0].endswith("each optimizer at its learning rate chosen on validation")
    rows = [cells(line) for line in lines[3:7]]
    assert {(row[0], row[-2]) for row in rows} == {("adamw", "lower on every seed"), ("lamb", "higher on every seed")}
    assert "smallest possible p is 0.25 with 3 seeds. Below 6 seeds it cannot reach 0.05" in out
    table = pd.read_csv(tmp_path / "compare.csv")
    assert table.query("optimizer == 'adamw' and test_set == '300K'")["difference"].item() == pytest.approx(-4.8)
    assert table.query("optimizer == 'lamb'")["lr"].unique().tolist() == [1e-4]  # its 1e-3 lost a seed to divergence
    assert (tmp_path / "seeds_needed.csv").exists()
    best_two = lines[lines.index(next(line for line in lines if line.startswith("The best two"))) + 3]
    assert "with 80% power at level 0.05" in out and cells(best_two)[-2:] == ["7", "4"]  # seeds, whole numbers
    _, csv, _ = run_main(capsys, "compare", study, "--by-lr", "--format", "csv")
    by_lr = pd.read_csv(io.StringIO(csv))
    assert by_lr.query("optimizer == 'adamw' and lr == 0.001 and test_set == 'val'")["difference"].item() == -4.0


def test_compare_unknown_baseline_is_one_line_and_exit_2(study):
    result = cli("compare", study, "--baseline", "sgd")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == ("error: need 'ok' rows of the baseline optimizer 'sgd' and of another; "
                             "optimizers: adam, adamw, lamb\n")


def test_ranks_flags_a_stable_ranking(capsys, study):
    code, out, _ = run_main(capsys, "ranks", study, "--lr", "1e-3")
    assert code == 0
    assert out.splitlines()[-1] == "ranking stable: mean Kendall tau 1.00 over 6 seed pairs (>= 0.7); 0 pairs below"
    _, csv, _ = run_main(capsys, "ranks", study, "--format", "csv")
    assert pd.read_csv(io.StringIO(csv)).set_index(["optimizer", "lr"])["mean_rank"][("adamw", 1e-3)] == 1.0


def test_time_to_target_in_meV_per_angstrom(capsys, study, tmp_path):
    code, csv, _ = run_main(capsys, "time-to-target", study, "--target", "60", "--format", "csv", "--out", tmp_path)
    summary = pd.read_csv(io.StringIO(csv)).set_index(["optimizer", "lr"])
    assert code == 0
    assert summary.loc[("adamw", 1e-3), ["reached", "median_step", "median_wall_s"]].tolist() == [3, 3, 40]
    assert summary.loc[("lamb", 1e-4), "median_step"] == np.inf
    per_trial = pd.read_csv(tmp_path / "time_to_target.csv")
    assert len(per_trial) == 18 and set(per_trial["stage"]) == {"first_order"}
    _, text, _ = run_main(capsys, "time-to-target", study)
    assert text.startswith("Validation force RMSE <= 1.1 x the best final value (55.44 meV/Å)")


def test_profiles_print_area_scores_and_write_the_chart(capsys, study, tmp_path):
    code, out, _ = run_main(capsys, "profiles", study, "--out", tmp_path)
    lines = out.splitlines()
    assert code == 0 and "over 2 problems" in lines[0]  # val chose each optimizer's lr: it is no problem
    assert [cells(line)[:2] for line in lines[3:6]] == [["adamw", "1.00"], ["adam", "0.85"], ["lamb", "0.00"]]
    assert (tmp_path / "profiles.png").read_bytes().startswith(PNG_MAGIC)
    assert "rho" in (tmp_path / "profiles.html").read_text()
    with pytest.raises(SystemExit) as exit_info:
        main(["profiles", str(study), "--max-tau", "1"])
    assert exit_info.value.code == 2 and "argument --max-tau: not a ratio above 1: '1'" in capsys.readouterr().err


def test_curves_against_wall_time(capsys, study, tmp_path):
    code, _, _ = run_main(capsys, "curves", study, "--stage", "first_order", "--x", "wall", "--out", tmp_path)
    assert code == 0 and '"field": "wall_time_s"' in (tmp_path / "curves.html").read_text()


def test_help_lists_the_verdict_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(command in out for command in ("compare", "ranks", "time-to-target", "profiles"))
