"""Launch an optimizer study on Ray.

    python -m study.launch --space lr_ablation                   # local Ray, embedded default
    python -m study.launch --space lr_ablation --address auto    # an existing Ray cluster
    python -m study.launch --space my_space.toml --config study.toml --gpus-per-trial 0.25

A study is the folder `<storage>/<name>/` with `manifest.json`, Ray's experiment state under
`ray/`, and the Parquet tables `results/scores.parquet` and `results/curves.parquet` (schema in
the README). Precedence of run settings: defaults < the space's `[fixed]` < `--config` file < flags.
"""

from __future__ import annotations

import argparse
import gc
import getpass
import json
import math
import os
import platform
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search_spaces import SearchSpace, get_space, known_spaces
from study.cluster import init_ray, shutdown_ray, watch_local_ray
from study.handoff import InputsHandoff, timed
from study.lock import study_lock
from study.results import ResultsStore, StorageError, write_study_text
from study.settings import Launch, Resources
from trainables.cli import OneLineParser, add_config_arguments, config_values_from_args, run_cli
from trainables.core.config import FinetuneConfig
from trainables.errors import ConfigError, OptistudyError

if TYPE_CHECKING:
    from study.engine import StudyContext
    from trainables.stages.inputs import Sources


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="python -m study.launch", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", required=True, help=f"a named space ({', '.join(known_spaces())}) or a "
                        ".toml/.yaml file")
    parser.add_argument("--name", help="study name (default: the space's name)")
    parser.add_argument("--storage", type=Path, default=Path("results"), help="folder holding studies")
    parser.add_argument("--address", help="Ray cluster to join: 'auto' or HOST:PORT "
                        "(default: $RAY_ADDRESS if set, else a new local Ray)")
    parser.add_argument("--cpus-per-trial", type=float, default=1)
    parser.add_argument("--gpus-per-trial", type=float, default=0, help="fractions share a GPU, e.g. 0.25")
    parser.add_argument("--max-concurrent", type=int, default=0, help="trials at once (0: as resources allow)")
    parser.add_argument("--max-failures", type=int, default=2, help="retries of a failing trial")
    parser.add_argument("--checkpoint-every", type=float, default=30.0, metavar="SECONDS",
                        help="checkpoint a running trial at the first epoch end this long after its last "
                             "checkpoint (0: every epoch); a failed trial resumes from there")
    parser.add_argument("--num-cpus", type=int, help="local Ray only: CPUs to use (default: all)")
    parser.add_argument("--num-gpus", type=int, help="local Ray only: GPUs to declare (default: detected)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted study of this name")
    parser.add_argument("--stop-signal", action="append", default=[], choices=list(OPTIONAL_STOP_SIGNALS),
                        help="also stop the study as on SIGTERM or Ctrl-C at this signal (what `sbatch "
                             "--signal=USR2@SECONDS` sends before the time limit; not USR1, Ray Tune's own)")
    parser.add_argument("--quiet", action="store_true", help="print nothing while the trials run, only the end")
    parser.add_argument("--verbose", action="store_true", help="Ray Tune's own per-trial tables instead of the "
                        "compact progress lines")
    add_config_arguments(parser)
    return parser


def study_config(args: argparse.Namespace, space: SearchSpace) -> FinetuneConfig:
    """Defaults < the space's fixed values < the --config file < flags; one thread per trial CPU."""
    values = {**space.fixed, **config_values_from_args(args)}
    values.setdefault("threads", max(1, int(args.cpus_per_trial)))
    return FinetuneConfig.from_dict(values)


def narrow_space(space: SearchSpace, args: argparse.Namespace) -> SearchSpace:
    """The space's grid narrowed by `--optimizer`, `--lr` and `--seed` (each must be one of the
    space's values; a flag that the space does not take as an axis is refused, never ignored)."""
    given = {name: getattr(args, name) for name in ("optimizer", "lr", "seed") if hasattr(args, name)}
    if "optimizer" in given:
        choices = tuple(space.lr_ranges) if space.search == "optuna" else space.optimizers
        _check_among(space, "optimizer", given["optimizer"], choices)
        space = replace(space, optimizers=(given["optimizer"],) if space.optimizers else (),
                        lr_ranges={k: v for k, v in space.lr_ranges.items() if k == given["optimizer"]})
    if "lr" in given:
        own = ("drawn per optimizer" if space.search == "optuna" else "one per optimizer" if space.lr_by_optimizer
               else "its own per method" if space.lrs_by_method else None)
        if own:
            raise ConfigError(f"space {space.name!r} sets the lr itself ({own}): --lr does not apply; use "
                              "--optimizer to narrow it")
        lr = next((lr for lr in space.lrs if math.isclose(lr, given["lr"], rel_tol=1e-9)), None)
        _check_among(space, "lr", given["lr"], space.lrs if lr is None else (given["lr"],))
        space = replace(space, lrs=(lr,))
    if "seed" in given:
        _check_among(space, "seed", given["seed"], space.seeds)
        space = replace(space, seeds=(given["seed"],))
    return space


def _check_among(space: SearchSpace, flag: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        shown = (lambda v: f"{v:g}" if isinstance(v, float) else str(v))
        raise ConfigError(f"--{flag} {shown(value)} is not in space {space.name!r} (its {flag}s: "
                          f"{', '.join(map(shown, choices))}): the flags narrow the space's grid")


def check_writable(storage: Path) -> None:
    try:
        storage.mkdir(parents=True, exist_ok=True)
        probe = storage / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"storage path not writable: {storage} ({err.strerror or err})") from None


def holds_study(folder: Path) -> bool:
    """Whether a study ran in `folder` (its rows, or Ray's state of its trials)."""
    return (folder / "results").exists() or (folder / "ray").exists()


def check_study_folder(folder: Path, resume: bool) -> None:
    """Never overwrite a finished or interrupted study unless asked to resume it."""
    exists = holds_study(folder)
    if exists and not resume:
        raise ConfigError(f"study folder {folder} already holds results; pass --resume to continue it "
                          "or --name to start another")
    if resume and not exists:
        raise ConfigError(f"nothing to resume in {folder}")


def _git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    import mace
    import ray
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "mace": mace.__version__,
            "ray": ray.__version__}


def write_manifest(folder: Path, **fields: Any) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text()) if path.is_file() else {}
    manifest.update(fields)
    write_study_text(path, json.dumps(manifest, indent=2, default=str))


def context(launch: Launch, sources: Sources) -> StudyContext:
    """The study's context, from where its data comes (no file read: the trials start while the
    data is checked)."""
    from study.engine import StudyContext
    from trainables.stages.inputs import planned_score_names

    config = launch.config
    system = config.system or (sources.train.parent.name if config.train_file is None else "user")
    return StudyContext(name=launch.name, folder=launch.folder, system=system, mode=config.mode,
                        test_sets=planned_score_names(sources), store=ResultsStore.open(launch.folder / "results"))


class StudyInterrupted(KeyboardInterrupt):
    """Ctrl-C or a stop signal (`signum`, None for Ctrl-C) stopped a study after it started writing:
    `--resume` continues it."""

    def __init__(self, folder: Path, signum: int | None = None):
        super().__init__(str(folder))
        self.folder, self.signum = folder, signum


# Signals `--stop-signal` may add to SIGTERM (`sbatch --signal=USR2@300` sends it ahead of the time
# limit). Not SIGUSR1: it is Ray Tune's own stop signal, whose handler takes it during a stage and
# ends the stage as if its trials had finished.
OPTIONAL_STOP_SIGNALS = {"USR2": signal.SIGUSR2}


class StopSignals:
    """SIGTERM (a scheduler's preemption or time limit, `scancel`, `kill`) and the signals
    `--stop-signal` adds stop a study as Ctrl-C does: each is handed to whatever handles Ctrl-C
    at that moment (the engine's stop of a running stage, which lets its trials reach their next
    checkpoint, else KeyboardInterrupt), and `received` keeps the first for the exit status
    (128 + its number). A repeated stop signal is ignored: a batch scheduler may send it to the
    driver and to its batch script, which passes it on (`scripts/slurm/study.sbatch`), and
    SIGKILL follows its grace period anyway (a second Ctrl-C still stops at once). While Ray shuts
    down, Ctrl-C is held off (`study.cluster.shutdown_ray`): so is a stop signal then."""

    def __init__(self, argv: list[str], names: list[str]):
        self.argv = argv  # the command's arguments, for the line that says how to resume
        self.signums = (signal.SIGTERM, *(OPTIONAL_STOP_SIGNALS[name] for name in names))
        self.received: int | None = None

    def install(self) -> None:
        for signum in self.signums:
            signal.signal(signum, self._stop)

    def _stop(self, signum, frame) -> None:
        if self.received is not None:
            return
        self.received = signum
        ctrl_c = signal.getsignal(signal.SIGINT)
        if ctrl_c is signal.SIG_IGN:
            return
        if not callable(ctrl_c):
            raise KeyboardInterrupt
        ctrl_c(signal.SIGINT, frame)


def exit_status(signum: int | None) -> int:
    """The shell's status of a command a signal ended: 128 + the signal (130 for Ctrl-C)."""
    return 128 + (signum or signal.SIGINT)


def launch_of(args: argparse.Namespace) -> Launch:
    """The study the command line asks for: its space narrowed by the flags, its config, its
    folder, the Ray it runs on and the trials' resources."""
    space = get_space(args.space)
    config = study_config(args, space)
    space = narrow_space(space, args)
    name = args.name or space.name
    resources = Resources(args.cpus_per_trial, args.gpus_per_trial, args.max_concurrent, args.max_failures,
                          args.checkpoint_every)
    return Launch(space=space, config=config, name=name, folder=args.storage / name, resources=resources,
                  address=args.address, num_cpus=args.num_cpus, num_gpus=args.num_gpus, resume=args.resume,
                  verbose=0 if args.quiet else 2 if args.verbose else 1)


def run(args: argparse.Namespace, stop: StopSignals) -> int:
    launch = launch_of(args)
    check_writable(args.storage)
    with study_lock(launch.folder):  # before anything is read or written in the folder
        check_study_folder(launch.folder, launch.resume)
        handoff = InputsHandoff(launch.config)
        try:
            return run_with_handoff(launch, handoff, stop)
        except OptistudyError:
            if handoff.check_failed() and not launch.resume:
                discard_unstarted_study(launch.folder)
            raise
        except KeyboardInterrupt:
            if holds_study(launch.folder):
                raise StudyInterrupted(launch.folder, stop.received) from None
            raise


def run_with_handoff(launch: Launch, handoff: InputsHandoff, stop: StopSignals) -> int:
    """`run_study`; when interrupted, the inputs thread's error if that is what interrupted it."""
    try:
        return run_study(launch, handoff, stop)
    except KeyboardInterrupt:
        handoff.close()
        if handoff.failed():
            handoff.raise_if_failed()  # the thread's own error interrupted the study
        raise
    finally:
        handoff.close()


def run_study(launch: Launch, handoff: InputsHandoff, stop: StopSignals) -> int:
    """Start Ray while the inputs thread imports the training stack, build the embedded default if
    the study uses it and it is not built yet, let the thread check the data, run the study, and
    stop a Ray started here as soon as the study ends or fails (an input error stops it at once).
    A local Ray that dies under the study ends it with one line (`ray_died`), not Ray's traceback."""
    started_ray = timed(handoff.setup_s, "ray_init", init_ray, launch.address, launch.num_cpus, launch.num_gpus)
    stop.install()  # after Ray's, which exits at SIGTERM
    watch = watch_local_ray(lambda died: ray_died(died, launch.folder, stop.argv)) if started_ray else None
    try:
        handoff.wait_imported()
        from trainables.stages.inputs import build_embedded_default, resolve_sources

        # The embedded default's first build (data, then pretraining: minutes) in this thread, so
        # that Ctrl-C stops it at once; a cached build is checked in milliseconds.
        timed(handoff.setup_s, "embedded_default", build_embedded_default, launch.config)
        sources = resolve_sources(launch.config)
        handoff.start_checking()
        return run_stages(launch, sources, handoff)
    finally:
        if watch is not None:
            watch.stop()
        if started_ray:
            shutdown_ray()


def run_stages(launch: Launch, sources: Sources, handoff: InputsHandoff) -> int:
    """Start the trials while the data is checked and the inputs are built (their workers' start
    and imports take seconds), run the stages, write the manifest and summary."""
    from study.engine import run_first_order, run_lbfgs
    from study.evaluate import run_evaluate
    from study.trials import SharedInputs

    shared, folder = SharedInputs(), launch.folder
    handoff.hand_over_to(shared)
    folder.mkdir(parents=True, exist_ok=True)
    ctx = context(launch, sources)
    write_manifest(folder, study=launch.name, space=asdict(launch.space), config=launch.config.to_dict(),
                   versions=_versions(), git_revision=_git_revision(), user=getpass.getuser(),
                   started=time.strftime("%Y-%m-%dT%H:%M:%S"))
    start = time.perf_counter()
    # Tune's new console output prints each stage's setup box even when silent; the old prints nothing
    if launch.verbose < 2:
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    grid = run_first_order(ctx, launch, shared)
    handoff.raise_if_failed()
    write_manifest(folder, setup_s=handoff.setup_s)
    refined = run_lbfgs(ctx, launch, grid, shared) if launch.space.has_lbfgs else None
    if launch.space.has_evaluate:
        run_evaluate(ctx, launch, {"first_order": grid, "lbfgs": refined})
    wall = time.perf_counter() - start
    write_manifest(folder, finished=time.strftime("%Y-%m-%dT%H:%M:%S"), wall_time_s=round(wall, 1))
    from analysis.study_summary import study_summary

    print(study_summary(folder, wall))
    if launch.resume:
        print("resumed: its wall time counts this run only, from --resume to the end; its trials' own wall times "
              "are in the rows")
    print(f"report: {write_report(folder)}")
    return 0


def write_report(folder: Path) -> Path:
    """The study's report page (`analysis.report`, imported here: seconds) as `<folder>/report/index.html`."""
    from analysis.report import report_html

    path, page = folder / "report" / "index.html", report_html(folder)
    try:
        path.parent.mkdir(exist_ok=True)
        path.write_text(page)
    except OSError as err:
        raise StorageError(f"cannot write {path}: {err.strerror or err}") from None
    return path


def discard_unstarted_study(folder: Path) -> None:
    """Remove what a new study wrote before its data check failed (its manifest, Ray's experiment
    state, an empty results folder: no trial had inputs, so no row exists), so that the corrected
    command runs under the same name without --resume. `check_study_folder` made sure neither
    `ray/` nor `results/` existed before this run; the folder, then empty, goes when the study's
    lock is released (`study.lock`)."""
    for written in (folder / "ray", folder / "results"):
        shutil.rmtree(written, ignore_errors=True)
    (folder / "manifest.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    from study.supervise import supervise  # the study runs in a child; this process waits, watching its local Ray

    build_parser().parse_args(argv)  # --help and usage errors answered here, before the fork
    return supervise(lambda: run_cli(lambda: run_telling_how_to_resume(argv)))


def run_telling_how_to_resume(argv: list[str]) -> int:
    """`run`; a study that Ctrl-C or a stop signal stopped ends with one line giving the command
    that resumes it, and exit status 128 + the signal (130 for Ctrl-C, 143 for SIGTERM); one whose
    local Ray died under it, with the same command and exit status 1."""
    args = build_parser().parse_args(argv)
    stop = StopSignals(argv, args.stop_signal)
    stop.install()
    try:
        return run(args, stop)
    except StudyInterrupted as interrupted:
        what = "interrupted" if interrupted.signum is None else f"stopped by {signal.Signals(interrupted.signum).name}"
        print(f"{what}: the finished trials are kept in {interrupted.folder}; resume with: "
              f"{resume_command(argv)}", file=sys.stderr)
        return exit_status(interrupted.signum)
    except KeyboardInterrupt:
        if stop.received is None:
            raise
        print(f"stopped by {signal.Signals(stop.received).name}", file=sys.stderr)  # before any trial: nothing kept
        return exit_status(stop.received)


def ray_died(names: list[str], folder: Path, argv: list[str]) -> None:
    """The one line that names the local Ray's processes that died under the study and says how
    to go on (said by the supervising parent, `study.supervise`, which then ends with status 1)."""
    went_on = (f"the finished trials are kept in {folder}; resume with: {resume_command(argv)}"
               if holds_study(folder) else f"run again: {shlex.join([sys.executable, '-m', 'study.launch', *argv])}")
    print(f"error: the study's local Ray died under it ({', '.join(names)} ended: killed, or out of memory); "
          f"{went_on}", file=sys.stderr, flush=True)
    sys.stdout.flush()


def resume_command(argv: list[str]) -> str:
    """The command line that resumes the study `argv` ran, with this interpreter (a bare `python`
    outside the study's virtual environment finds no `study` module)."""
    resume = [] if "--resume" in argv else ["--resume"]
    return shlex.join([sys.executable, "-m", "study.launch", *argv, *resume])


def exit_without_collecting(code: int) -> None:
    """Exit the command's process with `code`, its results written and Ray shut down (atexit), but
    without the interpreter's last garbage collection over every object torch, mace, Ray and pandas
    made, which took about 2 s after each study (gc.freeze: the collection skips them; the OS
    frees the memory).

    After Ctrl-C or a stop signal (128 + the signal) the process ends at once: its rows are
    written, the Ray it started is shut down (a joined cluster ends the study's actors when it sees
    its driver gone) and its lock is released by then, and the interpreter's exit would wait for
    the inputs thread to finish importing torch or building the graphs (seconds to minutes)."""
    if code > 128:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    gc.freeze()
    raise SystemExit(code)


if __name__ == "__main__":
    exit_without_collecting(main())
