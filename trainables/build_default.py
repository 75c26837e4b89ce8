"""Build (or rebuild) an embedded default: its labelled data and its pretrained foundation model.

    python -m trainables.build_default [--system biphenyl-xtb|cu3au-emt] [--size full|smoke] [--rebuild]

Runs happen on first use anyway; this command prebuilds the cache (e.g. on a cluster's shared
storage, with OPTISTUDY_CACHE pointing there) or regenerates it with `--rebuild`.
"""

from __future__ import annotations

from trainables.cli import OneLineParser, run_cli
from trainables.embedded import SYSTEMS, build_system, default_system_name
from trainables.embedded.pretrain import embedded_foundation


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m trainables.build_default", description=__doc__)
    parser.add_argument("--system", default=None, help=f"one of {', '.join(SYSTEMS)} (default: "
                        f"{default_system_name()} here)")
    parser.add_argument("--size", default="full", help="full, or smoke (tiny, for tests)")
    parser.add_argument("--rebuild", action="store_true", help="regenerate the data and retrain the foundation")

    def _main() -> int:
        args = parser.parse_args(argv)
        files = build_system(args.system or default_system_name(), args.size, rebuild=args.rebuild)
        foundation = embedded_foundation(files, rebuild=args.rebuild)
        print(f"data: {files.root}\nfoundation: {foundation}")
        return 0

    return run_cli(_main)


if __name__ == "__main__":
    raise SystemExit(main())
