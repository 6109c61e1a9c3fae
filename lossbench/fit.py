"""``lossbench fit`` (and validate/test/predict): LightningCLI over ``LossbenchModule`` and ``HFDataModule``.

The data module's ``spec`` is linked into the model when both are instantiated, so a
config names the head by short name (``--model.head focal``) or by ``class_path``,
and the backbone by its sizes; the data decides the input adapter and the classes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lossbench._hints import did_you_mean
from lossbench.data import HFDataModule
from lossbench.module import LossbenchModule


class LossbenchCLI(LightningCLI):
    """LightningCLI with the data's spec linked into the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.spec", "model.data_spec", apply_on="instantiate")


def bundled_configs() -> dict[str, Path]:
    """Name -> path of the bundled ``lossbench fit`` configs (``fit_digits`` ...), installed with the package."""
    from lossbench.compare.recipe.recipe import RECIPES_DIR

    return {p.stem: p for p in sorted(RECIPES_DIR.glob("fit_*.yaml"))}


def resolve_configs(args: Sequence[str]) -> list[str]:
    """``--config NAME`` (or a path such as ``recipes/fit_digits.yaml`` that does not exist here) -> the bundled
    config's path, so the bundled configs work after a plain ``pip install``; an existing file is left alone.

    Raises:
        ValueError: a ``--config`` that is neither a file nor a bundled config, naming the nearest ones.
    """
    out, args = [], list(args)
    bundled = bundled_configs()
    i = 0
    while i < len(args):
        item = args[i]
        if item in ("--config", "-c") and i + 1 < len(args):
            out += [item, _config_path(args[i + 1], bundled)]
            i += 2
            continue
        if item.startswith("--config="):
            item = "--config=" + _config_path(item.split("=", 1)[1], bundled)
        out.append(item)
        i += 1
    return out


def _config_path(value: str, bundled: dict[str, Path]) -> str:
    path = Path(value)
    if path.is_file() or value.lstrip().startswith("{"):  # a file, or an inline YAML/JSON config
        return value
    name = path.name[: -len(path.suffix)] if path.suffix in (".yaml", ".yml") else path.name
    if name in bundled:
        return str(bundled[name])
    raise ValueError(
        f"`--config` {value!r} is neither a file nor a bundled config{did_you_mean(name, bundled)} "
        f"(bundled: {', '.join(bundled)})"
    )


def run_lightning_cli(args: Sequence[str] | None) -> int:
    """Run a LightningCLI subcommand (``fit``, ``validate``, ``test``, ``predict``); ``None`` reads sys.argv."""
    LossbenchCLI(
        LossbenchModule,
        HFDataModule,
        args=None if args is None else list(args),
        save_config_kwargs={"overwrite": True},
        trainer_defaults={"enable_model_summary": False},
    )
    return 0
