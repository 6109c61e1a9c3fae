"""``lossbench fit`` (and validate/test/predict): LightningCLI over ``LossbenchModule`` and ``HFDataModule``.

The data module's ``spec`` is linked into the model when both are instantiated, so a
config names the head by short name (``--model.head focal``) or by ``class_path``,
and the backbone by its sizes; the data decides the input adapter and the classes.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from lossbench.data import HFDataModule
from lossbench.module import LossbenchModule


class LossbenchCLI(LightningCLI):
    """LightningCLI with the data's spec linked into the model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.link_arguments("data.spec", "model.data_spec", apply_on="instantiate")


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
