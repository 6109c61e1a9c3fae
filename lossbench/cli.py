"""The ``lossbench`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lossbench._extras import MissingExtraError, require


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


def _recipes(args: argparse.Namespace) -> int:
    from lossbench.compare.recipe.recipe import bundled_recipes, recipe_summary

    recipes = bundled_recipes()
    width = max(len(n) for n in recipes)
    for name, path in recipes.items():
        print(f"{name.ljust(width)}  {recipe_summary(path)}")
    print(f"\nrun one: lossbench compare NAME --output DIR ({len(recipes)} recipes)")
    return 0


def _overrides(extra: list[str]) -> dict[str, str]:
    """``--trainer.max_epochs 2`` / ``--trainer.max_epochs=2`` pairs -> {"trainer.max_epochs": "2"}."""
    out: dict[str, str] = {}
    i = 0
    while i < len(extra):
        item = extra[i]
        if not item.startswith("--") or "." not in item.split("=")[0]:
            raise ValueError(f"unexpected argument {item!r} (overrides look like --trainer.max_epochs 2)")
        if "=" in item:
            key, value = item[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise ValueError(f"override {item!r} needs a value")
            key, value = item[2:], extra[i + 1]
            i += 2
        out[key] = value
    return out


def _seeds(text: str) -> int | list[int]:
    """``--seeds``: a count (``4``: seeds 0..3) or a comma-separated list of seeds (``0,1,7``)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()] if "," in text else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a count (4) or a comma-separated list of seeds (0,1,7), got {text!r}"
        ) from None


def _message(exc: BaseException) -> str:
    """An error's text after the command's own ``lossbench compare:`` (a leading ``compare:`` is not said twice)."""
    return str(exc).removeprefix("compare: ")


EXIT_WRITE_FAILED = 74  # sysexits.h EX_IOERR: the results folder could not be written


def _compare(args: argparse.Namespace, extra: list[str]) -> int:
    """``lossbench.compare(...)`` (:func:`~lossbench.compare.result.run_comparison`) in its three steps, each
    step's failures told as a command tells them."""
    from lossbench.compare.execution.interrupt import Interrupted
    from lossbench.compare.recipe.checks import RecipeError
    from lossbench.compare.result import finish_comparison, prepare_comparison, resolve_recipe
    from lossbench.compare.store.layout import RECORD_FILE
    from lossbench.compare.store.lock import FolderBusyError
    from lossbench.compare.store.storage import OutsideResultsFolder, WriteFailed
    from lossbench.heads import UnknownHeadError

    try:
        recipe = resolve_recipe(
            args.recipe,
            overrides=_overrides(extra),  # strings, read as YAML
            seeds=args.seeds,
            losses=[s for s in args.losses.split(",") if s] if args.losses else None,
            executor=args.executor,
            launcher=args.launcher,
            address=args.address,
        )
        if args.print_config:  # the resolved recipe (defaults filled in, overrides applied), nothing run
            print(recipe.to_yaml(), end="")
            return 0
        # everything (recipe, output folder, data, losses against the data) is checked before anything is
        # written; the data module's errors (ValueError, FileNotFoundError, HubUnreachableError) are bad input too
        comparison = prepare_comparison(recipe, args.output, progress=not args.no_progress, wait=args.wait)
    except (RecipeError, UnknownHeadError, ValueError, OSError) as exc:
        print(f"lossbench compare: {_message(exc)}", file=sys.stderr)
        return 2
    try:
        result = finish_comparison(comparison)
    except (RecipeError, UnknownHeadError, FolderBusyError) as exc:
        print(f"lossbench compare: {_message(exc)}", file=sys.stderr)
        return 2
    except Interrupted as exc:  # SIGTERM / Ctrl-C: every write was atomic, the interrupted run resumes
        if comparison.processes.is_global_zero:
            print(
                f"lossbench compare: stopped by {exc.name} at {comparison.position}; the folder "
                f"{str(comparison.output)!r} is resumable: rerun the same command to continue",
                file=sys.stderr,
            )
        return exc.exit_code
    except OutsideResultsFolder as exc:  # a symlink out of the folder: nothing outside was touched
        print(f"lossbench compare: {_message(exc)}; stopped at {comparison.position}", file=sys.stderr)
        return 2
    except WriteFailed as exc:  # disk full, quota, read-only: every write is atomic, so the folder resumes
        print(
            f"lossbench compare: {_message(exc)}; stopped at {comparison.position}; free space (or fix the folder) and "
            f"rerun the same command to resume {str(comparison.output)!r}",
            file=sys.stderr,
        )
        return EXIT_WRITE_FAILED
    if not comparison.processes.is_global_zero:  # under DDP every process runs this command; one reports
        return 0
    print(f"report: {result.report_path}")
    failed = result.failed
    if failed:
        print(
            f"lossbench compare: {len(failed)} run(s) failed: {'; '.join(failed)} "
            f"(details in their {RECORD_FILE} and the report); rerunning the command retries them",
            file=sys.stderr,
        )
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    from lossbench.compare.report.render import render_report
    from lossbench.compare.store.storage import OutsideResultsFolder

    try:
        if args.recompute:
            return _recompute(args.folder, args.trust_head or [])
        path = render_report(args.folder, say=print)
    except (FileNotFoundError, ValueError, OutsideResultsFolder) as exc:  # no comparison folder, a malformed
        # comparison.json, or plots/ a symlink out of the folder
        print(f"lossbench report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


def _recompute(folder: str, trusted_heads: list[str]) -> int:
    """Recompute every finished run's numbers from its weights, predictions and metrics.csv; 1 if any differ."""
    from lossbench.compare.execution.recompute import recompute
    from lossbench.compare.execution.runner import quiet
    from lossbench.compare.store.layout import METRICS_FILE

    with quiet():
        result = recompute(folder, trusted_heads=trusted_heads)
    for problem in result.problems:
        print(f"DIFFERS: {problem}")
    print(
        f"recomputed {len(result.checked)} finished run(s): test metrics from the saved predictions, "
        f"predictions from the saved weights (largest difference {result.max_prediction_diff:.3g}), "
        f"final/best/steps-to-target/AUC from {METRICS_FILE}: "
        + ("all equal to the records" if result.ok else f"{len(result.problems)} difference(s)")
    )
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lossbench", description="Loss heads for PyTorch Lightning.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command")
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(
            name, add_help=False, help=f"LightningCLI {name} of LossbenchModule on HFDataModule (--help for options)"
        )
    heads = sub.add_parser("heads", help="list the available loss heads (built-in and plugins)")
    heads.add_argument("--task", help="only heads of this task kind")
    heads.set_defaults(func=_heads)
    recipes = sub.add_parser("recipes", help="list the bundled comparison recipes")
    recipes.set_defaults(func=_recipes)
    compare = sub.add_parser(
        "compare",
        help="train once per loss and seed under identical setups and report",
        description="Compare losses: RECIPE is a YAML path or a bundled name (lossbench recipes). "
        "Any recipe field can be overridden with a dotted option, e.g. --trainer.max_epochs 2.",
    )
    compare.add_argument("recipe", metavar="RECIPE")
    compare.add_argument("--output", help="results folder (default runs/<recipe name>); rerun to resume")
    compare.add_argument(
        "--seeds",
        type=_seeds,
        help="run seeds 0..N-1 (a count: --seeds 4) or these seeds (a list: --seeds 0,1,7) instead of the recipe's",
    )
    compare.add_argument("--losses", help="comma-separated subset of the recipe's losses (the baseline is kept)")
    compare.add_argument("--no-progress", action="store_true", help="no progress display")
    compare.add_argument(
        "--print_config",
        "--print-config",
        action="store_true",
        help="print the resolved recipe (defaults filled in, overrides applied) as YAML and exit; "
        "it runs as given (lossbench compare FILE)",
    )
    compare.add_argument(
        "--executor",
        choices=("fused", "sequential"),  # recipe.EXECUTORS (unimported: a light CLI)
        help="train each seed's losses in lockstep as one model array (fused, the default) or one "
        "run after another (sequential); overrides the recipe's `executor`",
    )
    compare.add_argument(
        "--launcher",
        choices=("local", "ray"),  # recipe.LAUNCHERS (unimported: a light CLI)
        help="where the units of work run: one after another in this process (local, the default) or in "
        "parallel as Ray tasks (ray: pip install lossbench[ray]); overrides the recipe's `launcher.name`",
    )
    compare.add_argument(
        "--address",
        help="with --launcher ray: the Ray cluster to use ('auto', 'ray://host:10001', 'host:6379'); "
        "default: a local Ray started for the comparison",
    )
    compare.add_argument(
        "--wait",
        action="store_true",
        help="if another lossbench compare holds the --output folder, wait for it, then resume "
        "what it left (default: refuse, naming its pid)",
    )
    compare.set_defaults(func=_compare, takes_extra=True)
    report = sub.add_parser("report", help="re-render a comparison's report from its records, without training")
    report.add_argument("folder", metavar="DIR")
    report.add_argument(
        "--recompute",
        action="store_true",
        help="recompute every number of results.csv from the runs' weights, test predictions and "
        "metrics.csv, and say whether they equal the records (exit 1 if not)",
    )
    report.add_argument(
        "--trust-head",
        action="append",
        metavar="CLASS_PATH",
        help="with --recompute: a dotted head class path the runs name whose module may be imported "
        "(a folder's records never make lossbench import a module on their own word); repeatable",
    )
    report.set_defaults(func=_report)
    return parser


LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
NEEDS_COMPARE = ("compare", "report")  # the commands that need the `compare` extra (the others run in a light install)
EXIT_MISSING_EXTRA = 69  # sysexits.h EX_UNAVAILABLE: a part of lossbench that is not installed


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from lossbench.fit import resolve_configs, run_lightning_cli

        try:  # bundled configs by name (`--config fit_digits`), after a plain pip install too
            argv = resolve_configs(argv)
        except ValueError as exc:
            print(f"lossbench {argv[0]}: {exc}", file=sys.stderr)
            return 2
        try:
            return run_lightning_cli(argv)
        except MissingExtraError as exc:  # e.g. the bundled data module in a light install
            print(f"lossbench {argv[0]}: {exc}", file=sys.stderr)
            return EXIT_MISSING_EXTRA
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.version:
        from lossbench._version import __version__

        print(__version__)
        return 0
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        if args.command in NEEDS_COMPARE:
            require("compare", f"lossbench {args.command}")
        return args.func(args, extra) if getattr(args, "takes_extra", False) else args.func(args)
    except MissingExtraError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_MISSING_EXTRA


if __name__ == "__main__":
    raise SystemExit(main())
