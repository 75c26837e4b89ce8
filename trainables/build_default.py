"""Build (or rebuild) an embedded default: its labelled data and its pretrained foundation model.

    python -m trainables.build_default [--system biphenyl-xtb|cu3au-emt] [--size full|smoke] [--rebuild] [--bundle]

A first run does this anyway, from the package's bundle where one matches this machine
(`trainables/embedded/bundled/`, seconds) or by generating and pretraining (minutes). This command
prebuilds the cache (e.g. on a cluster's shared storage, with OPTISTUDY_CACHE pointing there),
regenerates it with `--rebuild`, and with `--bundle` packs the built cache folder as the package's
bundle (a maintainer's step after a change to the data or the pretraining recipe). At full size,
`--bundle` also compiles the study step (the search spaces' replay mode, batch size 5) from an
empty compiler cache and ships it (`trainables/speed/shipped/`; after a change to the step's graph).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from trainables.cli import command_parser, run_command
from trainables.core.config import FinetuneConfig
from trainables.embedded import SYSTEMS, build_system, default_system_name
from trainables.embedded.bundle import bundle_path, pack
from trainables.embedded.pretrain import embedded_foundation
from trainables.embedded.registry import data_paths
from trainables.speed.shipped_steps import shipped_path
from trainables.stages.inputs import WARM_COMPILE

STUDY_STEP = {"mode": "replay", "replay_samples": 100, "batch_size": 5}  # as the search spaces fix it


def ship_compiled_step(name: str, size: str) -> Path:
    """Compile `name`'s study step in a process with an empty compiler cache; ship what it compiled."""
    path = shipped_path(f"{name}-{STUDY_STEP['mode']}")
    config = FinetuneConfig(system=name, data_size=size, epochs=1, max_steps=2, threads=1, **STUDY_STEP)
    with tempfile.TemporaryDirectory(prefix="optistudy-ship-") as folder:
        (Path(folder) / "config.json").write_text(json.dumps(config.to_dict()))
        env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(Path(folder) / "inductor")}
        subprocess.run([sys.executable, "-m", WARM_COMPILE, str(Path(folder) / "config.json"),
                        "--save-compiled", str(path)], env=env, check=True)
    return path


def _parser() -> argparse.ArgumentParser:
    parser = command_parser("trainables.build_default", __doc__)
    parser.add_argument("--system", default=None, help=f"one of {', '.join(SYSTEMS)} (default: "
                        f"{default_system_name()} here)")
    parser.add_argument("--size", default="full", help="full, or smoke (tiny, for tests)")
    parser.add_argument("--rebuild", action="store_true", help="regenerate the data and retrain the foundation")
    parser.add_argument("--bundle", action="store_true", help="then pack the build as the package's bundle")
    return parser


def build_default(args: argparse.Namespace) -> int:
    """The command: the system built (or found in the cache), and packed with `--bundle`."""
    name = args.system or default_system_name()
    files = build_system(name, args.size, rebuild=args.rebuild)
    foundation = embedded_foundation(files, rebuild=args.rebuild)
    print(f"data: {files.root}\nfoundation: {foundation}")
    if args.bundle:
        names = [path.name for path in data_paths(files).values()]
        print(f"bundle: {pack(files.root, names, bundle_path(name, args.size))}")
        if args.size == "full":
            print(f"compiled step: {ship_compiled_step(name, args.size)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(_parser(), build_default, argv)


if __name__ == "__main__":
    raise SystemExit(main())
