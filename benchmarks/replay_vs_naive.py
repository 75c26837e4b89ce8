"""Replay vs naive fine-tuning with the same budget: target accuracy and forgetting.

    OMP_NUM_THREADS=1 python benchmarks/replay_vs_naive.py --epochs 10 --samples 200

Both modes fine-tune the embedded default system's foundation with one optimizer, learning rate,
epoch count and seed, and both score the same replay set (`replay_samples` configurations of the
pre-training corpus). Forgetting is the rise in force RMSE on pre-training data from before to after
fine-tuning, measured on
- the replay set, with the model's own head for it (`scores["replay"]`: naive = its single head,
  replay = the replay head, which trained on these configurations),
- the replay set and a held-out sample of the corpus (disjoint from the replay set) with the
  deployed model: naive = its single head, replay = the exported task head.
The forgetting ratio is naive's rise divided by replay's. Note: an epoch in replay mode also passes
over the replay set, so it takes more steps (the step counts are printed).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
for category in (UserWarning, DeprecationWarning):  # mace's TorchScript warnings would bury the table
    warnings.simplefilter("ignore", category)

from trainables.core import data as D  # noqa: E402
from trainables.core.config import FinetuneConfig  # noqa: E402
from trainables.core.replay import TASK_HEAD, export_task_head, replay_indices  # noqa: E402
from trainables.core.training import evaluate  # noqa: E402
from trainables.stages.finetune import FinetuneResult, run_finetune  # noqa: E402
from trainables.stages.inputs import PreparedInputs, prepare_inputs  # noqa: E402

MODES = ("naive", "replay")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", default=None, help="embedded system (default: the embedded default)")
    parser.add_argument("--data-size", default="full")
    parser.add_argument("--optimizer", default="adam")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--samples", type=int, default=200, help="replay_samples N")
    parser.add_argument("--selection", default="fps", choices=("fps", "random"))
    parser.add_argument("--replay-weight", type=float, default=1.0)
    parser.add_argument("--heldout", type=int, default=200, help="held-out pre-training configurations")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def heldout_items(inputs: PreparedInputs, config: FinetuneConfig, count: int) -> list[D.Labelled]:
    """`count` corpus configurations outside the replay set, drawn with a seeded generator."""
    corpus = D.read_labelled(inputs.sources.replay)
    chosen = set(replay_indices(corpus, config.replay_samples, config.replay_selection, config.split_seed,
                                inputs.foundation()))
    rest = [i for i in range(len(corpus)) if i not in chosen]
    picked = np.random.default_rng(config.split_seed + 1).choice(len(rest), size=min(count, len(rest)), replace=False)
    return [corpus[rest[i]] for i in sorted(picked)]


def force_rmse(model: torch.nn.Module, items: list[D.Labelled], inputs: PreparedInputs) -> float:
    """Force RMSE (meV/A) of `model`'s task head on `items`."""
    tagged = [dataclasses.replace(item, head=TASK_HEAD) for item in items]
    graphs = D.build_graphs(tagged, inputs.elements, float(model.r_max), getattr(torch, inputs.dtype), model.heads)
    return evaluate(model, D.make_loader(graphs, 16, shuffle=False), torch.device("cpu"))["force_rmse_mev_a"]


def deployed_forgetting(result: FinetuneResult, inputs: PreparedInputs, sets: dict[str, list]) -> dict[str, float]:
    """Force RMSE before (the initial task head) and after (the exported task head) on each set."""
    before, after = inputs.initial_model(), export_task_head(result.model.cpu())
    row = {}
    for name, items in sets.items():
        row[f"{name}_before"] = force_rmse(before, items, inputs)
        row[f"{name}_after"] = force_rmse(after, items, inputs)
    return row


def run_mode(mode: str, args) -> dict[str, float]:
    config = FinetuneConfig(system=args.system, data_size=args.data_size, optimizer=args.optimizer, lr=args.lr,
                            epochs=args.epochs, seed=args.seed, mode=mode, replay_samples=args.samples,
                            replay_selection=args.selection, replay_weight=args.replay_weight)
    inputs = prepare_inputs(config)
    result = run_finetune(config, inputs, on_epoch=lambda r, _: print(f"  {mode} epoch {r['epoch']} "
                          f"val F {r['val_force_rmse_mev_a']:.1f} meV/A  {r['wall_time_s']:.0f} s", flush=True))
    if result.status != "ok":
        raise SystemExit(f"{mode} run {result.status}")
    corpus = D.read_labelled(inputs.sources.replay)
    replay_items = [corpus[i] for i in replay_indices(corpus, config.replay_samples, config.replay_selection,
                                                      config.split_seed, inputs.foundation())]
    sets = {"deployed_replay": replay_items, "deployed_heldout": heldout_items(inputs, config, args.heldout)}
    return {"steps": result.steps, "wall_s": result.wall_time_s, "scores": result.scores,
            **deployed_forgetting(result, inputs, sets)}


def format_table(rows: dict[str, dict]) -> str:
    tests = [name for name in rows["naive"]["scores"] if not name.startswith("replay")]
    lines = [f"{'quantity':<44}" + "".join(f"{mode:>12}" for mode in rows)]

    def line(label, value, digits=1):
        lines.append(f"{label:<44}" + "".join(f"{value(row):>12.{digits}f}" for row in rows.values()))

    line("steps", lambda r: r["steps"], digits=0)
    line("wall time (s)", lambda r: r["wall_s"])
    for name in tests:
        line(f"target {name}: F RMSE (meV/A)", lambda r, n=name: r["scores"][n]["force_rmse_mev_a"])
        line(f"target {name}: E RMSE (meV/atom)", lambda r, n=name: r["scores"][n]["energy_rmse_mev_atom"])
    for key, label in (("replay_before", "replay set, own head, before"), ("replay", "replay set, own head, after")):
        line(f"{label}: F RMSE", lambda r, k=key: r["scores"][k]["force_rmse_mev_a"])
        line(f"{label}: E RMSE", lambda r, k=key: r["scores"][k]["energy_rmse_mev_atom"])
    for key in ("deployed_replay", "deployed_heldout"):
        line(f"{key.replace('_', ' ')} before: F RMSE", lambda r, k=key: r[f"{k}_before"])
        line(f"{key.replace('_', ' ')} after: F RMSE", lambda r, k=key: r[f"{k}_after"])
    return "\n".join(lines)


def forgetting_ratios(rows: dict[str, dict]) -> str:
    """naive's rise in force RMSE divided by replay's, per measurement."""
    def own_head_rise(row):
        return row["scores"]["replay"]["force_rmse_mev_a"] - row["scores"]["replay_before"]["force_rmse_mev_a"]

    rises = {
        "replay set, own head": own_head_rise,
        "replay set, deployed": lambda r: r["deployed_replay_after"] - r["deployed_replay_before"],
        "held-out, deployed": lambda r: r["deployed_heldout_after"] - r["deployed_heldout_before"],
    }
    lines = []
    for label, rise in rises.items():
        naive, replay = rise(rows["naive"]), rise(rows["replay"])
        ratio = f"{naive / replay:.2f}" if naive > 0 and replay > 0 else "n/a (a rise is not positive)"
        lines.append(f"forgetting ({label}): naive {naive:+.1f}, replay {replay:+.1f} meV/A -> ratio {ratio}")
    return "\n".join(lines)


def main() -> int:
    args = _parser().parse_args()
    torch.set_num_threads(1)
    rows = {mode: run_mode(mode, args) for mode in MODES}
    print(f"\n{args.optimizer}, lr {args.lr}, {args.epochs} epochs, seed {args.seed}, "
          f"{args.samples} replay configurations ({args.selection}), replay weight {args.replay_weight}")
    print(format_table(rows))
    print(forgetting_ratios(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
