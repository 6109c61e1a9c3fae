"""The ``lossbench`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _heads(args: argparse.Namespace) -> int:
    from lossbench.heads import TASKS, list_heads

    rows = [h for h in list_heads() if args.task is None or h.task == args.task]
    if args.task is not None and args.task not in TASKS:
        print(f"lossbench heads: --task must be one of {', '.join(TASKS)}, got {args.task!r}", file=sys.stderr)
        return 2
    table = [("name", "task", "source", "summary")] + [(h.name, h.task, h.source, h.summary) for h in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for i, row in enumerate(table):
        print("  ".join(cell.ljust(w) for cell, w in zip(row[:3], widths)) + "  " + row[3])
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 7)
    print(f"\n{len(rows)} heads")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lossbench", description="Loss heads for PyTorch Lightning.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, add_help=False, help=f"LightningCLI {name} of LossbenchModule on HFDataModule (--help for options)")
    heads = sub.add_parser("heads", help="list the available loss heads (built-in and plugins)")
    heads.add_argument("--task", help="only heads of this task kind")
    heads.set_defaults(func=_heads)
    return parser


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def main(argv: Sequence[str] | None = None) -> int:
    from_console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from lossbench.fit import run_lightning_cli

        return run_lightning_cli(None if from_console else argv)  # LightningCLI reads sys.argv itself
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from lossbench import __version__

        print(__version__)
        return 0
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
