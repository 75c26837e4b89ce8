"""The study engine end to end on the smoke space: real Ray, real MACE, real Parquet."""

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from test_accidents import ctrl_c_as_in_a_terminal

ROOT = Path(__file__).resolve().parents[2]

SCORE_COLUMNS = {"study", "trial_id", "stage", "parent_trial_id", "optimizer", "optimizer_order", "lr", "seed",
                 "test_set", "energy_rmse_mev_atom", "force_rmse_mev_a", "wall_time_s", "compile_time_s",
                 "training_time_s", "steps", "resumed_from_step", "status", "host", "device", "device_name",
                 "torch_threads", "version_torch", "version_mace_torch"}


def _scores(folder):
    return pq.read_table(folder / "results" / "scores.parquet").to_pandas()


def _curves(folder):
    return pq.read_table(folder / "results" / "curves.parquet").to_pandas()


def test_smoke_study_writes_the_schema(smoke_study):
    folder, stdout = smoke_study
    scores = _scores(folder)
    assert SCORE_COLUMNS <= set(scores.columns)
    first = scores[scores.stage == "first_order"]
    assert set(first.optimizer) == {"adam", "schedulefree"}
    assert set(first.test_set) == {"val", "300K", "600K", "1200K", "dihedral", "val_before", "replay", "replay_before"}
    assert set(first["mode"]) == {"replay"}
    assert (first.status == "ok").all() and first.force_rmse_mev_a.notna().all()
    assert not scores.duplicated(["trial_id", "stage", "test_set"]).any()
    assert (scores.resumed_from_step == 0).all()  # nothing failed, so nothing restarted
    assert (scores.device == "cpu").all() and (scores.torch_threads == 1).all()
    assert (scores.compile_time_s + scores.training_time_s).tolist() == pytest.approx(scores.wall_time_s.tolist())
    assert set(first.optimizer_order) == {2, 7}  # the registry's positions of adam and schedulefree
    scan = first[first.test_set == "dihedral"]
    assert scan.rel_energy_rmse_mev.notna().all() and scan.profile_reference_mev.notna().all()
    assert scan.profile_curve.map(lambda text: set(json.loads(text))).tolist() == [{"dihedral"}] * len(scan)
    assert first[first.test_set == "300K"].rel_energy_rmse_mev.isna().all()
    assert "force RMSE (meV/A), stage first_order" in stdout and "schedulefree" in stdout
    assert "Trial status" not in stdout and "[first_order]" not in stdout  # --quiet: nothing until the end
    manifest = json.loads((folder / "manifest.json").read_text())
    setup_s = manifest["setup_s"]
    assert set(setup_s) == {"imports", "embedded_default", "check_data", "build_inputs", "ray_init"}
    assert setup_s["embedded_default"] >= 0  # built by an earlier fixture: checked in milliseconds
    assert all(setup_s[key] > 0 for key in ("imports", "check_data", "build_inputs", "ray_init"))
    assert manifest["wall_time_s"] > 0


def test_lbfgs_rows_point_to_their_parents(smoke_study):
    folder, _ = smoke_study
    scores = _scores(folder)
    first = scores[scores.stage == "first_order"].drop_duplicates("trial_id").set_index("trial_id")
    refined = scores[scores.stage == "lbfgs"].drop_duplicates("trial_id")
    assert len(refined) == len(first)
    for row in refined.itertuples():
        parent = first.loc[row.parent_trial_id]
        assert (row.optimizer, row.lr, row.seed) == (parent.optimizer, parent.lr, parent.seed)


def test_curves_hold_every_epoch_and_lbfgs_step(smoke_study):
    folder, _ = smoke_study
    curves = _curves(folder)
    epochs = curves[curves.stage == "first_order"].groupby("trial_id").step.apply(sorted)
    assert all(steps == [1, 2] for steps in epochs)
    lbfgs = curves[curves.stage == "lbfgs"]
    assert lbfgs.groupby("trial_id").step.min().eq(0).all() and lbfgs.fevals.notna().all()
    assert not curves.duplicated(["trial_id", "stage", "step"]).any()


def test_flags_override_the_spaces_fixed_values_in_the_trials():
    """The smoke space fixes compile = false and epochs = 2; flags come last, in the manifest's
    config and in what every trial runs."""
    from search_spaces import get_space
    from study.points import first_order_param_space
    from study.launch import build_parser, study_config

    space = get_space("smoke")
    args = build_parser().parse_args(["--space", "smoke", "--compile", "true", "--epochs", "1", "--cpus-per-trial", "2"])
    trial = first_order_param_space(space, study_config(args, space))["finetune"]
    assert (trial["compile"], trial["epochs"], trial["threads"]) == (True, 1, 2)
    assert (trial["batch_size"], trial["mode"]) == (4, "replay")  # fixed values no flag overrides


def test_existing_study_is_never_overwritten(smoke_study, launch):
    folder, _ = smoke_study
    before = (folder / "results" / "scores.parquet").read_bytes()
    again = launch(folder.parent)
    assert again.returncode == 2
    assert again.stderr.strip().splitlines()[-1].startswith(f"error: study folder {folder} already holds results")
    assert (folder / "results" / "scores.parquet").read_bytes() == before


@pytest.mark.parametrize("args, message", [
    (["--space", "nope"], "error: unknown search space 'nope'; known: curvature, lbfgs_refinement, lr_ablation"),
    (["--space", "smoke", "--optimizer", "adamax"], "error: unknown optimizer 'adamax'"),
    (["--space", "smoke", "--lr", "0"], "error: lr must be positive"),
    (["--space", "missing.toml"], "error: space file not found: missing.toml"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", "study.launch", "--storage", str(tmp_path), *args],
                         capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines()[-1].startswith(message)
    assert not (tmp_path / "smoke").exists()


def test_ctrl_c_while_the_embedded_default_pretrains_stops_the_pretraining(launch_args, tmp_path):
    """A first run on a system the package has no bundle of (here the Cu3Au default) generates and
    pretrains it (minutes at full size). Ctrl-C during its pretraining ends the command at once:
    nothing goes on to finish and cache the foundation."""
    import os
    import signal
    import subprocess

    cache = tmp_path / "cache"
    env = {**os.environ, "OPTISTUDY_CACHE": str(cache), "PYTHONUNBUFFERED": "1", "PYTHONWARNINGS": "ignore"}
    command = [*launch_args(tmp_path / "studies"), "--system", "cu3au-emt"]
    driver = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=ctrl_c_as_in_a_terminal)
    try:
        for line in driver.stdout:
            if line.startswith("pretraining foundation: epoch 1/"):
                os.killpg(driver.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole group
                break
        assert driver.wait(timeout=120) == 130
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.stderr.read().strip().splitlines()[-1] == "interrupted"
    assert list(cache.glob("v1/*/manifest.json")) and not list(cache.glob("v1/*/foundation.pt"))
    assert not (tmp_path / "studies" / "smoke").exists()


@pytest.mark.parametrize("command", [
    ["table"], ["frontier", "--test-set", "1200K"], ["lbfgs"], ["improvement", "--baseline", "adam"],
    ["curves", "--format", "markdown"],
    ["sql", "-q", "SELECT stage, count(*) AS n FROM scores GROUP BY stage ORDER BY stage"],
])
def test_analysis_cli_reads_the_engines_parquet(smoke_study, command, tmp_path):
    import subprocess
    import sys

    folder, _ = smoke_study
    run = subprocess.run([sys.executable, "-m", "analysis", command[0], str(folder), *command[1:],
                          "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "adam" in run.stdout or "lbfgs" in run.stdout
    assert any(tmp_path.iterdir())


def test_a_failed_graph_build_stops_the_study_with_its_error_and_resume_runs_it(cache_root, smoke_inputs, tmp_path,
                                                                              monkeypatch, launch):
    """The graphs are built while Ray and the trial workers start. Should that build fail (no input
    error is left by then: a bug, no memory), the study stops with the build's own error, records no
    trial, and `--resume` later runs every trial."""
    import time

    import ray

    import trainables.stages.inputs
    from study import launch as launcher

    def failing_build(checked):
        time.sleep(8)  # fail once the trials wait for their inputs (a sooner failure takes the same path out)
        raise RuntimeError("graph build failed")

    monkeypatch.setattr(trainables.stages.inputs, "build_inputs", failing_build)
    args = launcher.build_parser().parse_args(["--space", "smoke", "--storage", str(tmp_path), "--quiet",
                                               "--num-cpus", "2"])
    try:
        with pytest.raises(RuntimeError, match="graph build failed"):
            launcher.run(args, launcher.StopSignals([], []))
    finally:
        ray.shutdown()
    assert not (tmp_path / "smoke" / "results" / "scores.parquet").exists()
    resumed = launch(tmp_path, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    scores = _scores(tmp_path / "smoke")
    assert set(scores["status"]) == {"ok"} and not scores.duplicated(["trial_id", "stage", "test_set"]).any()
    assert scores[scores["stage"] == "first_order"]["trial_id"].nunique() == 2
