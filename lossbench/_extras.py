"""The optional parts of the package, and the one-line error that names the extra a missing part comes with.

``pip install lossbench`` is the light install: the heads, the functional losses, the module and ``lossbench fit``
(torch, lightning, torchmetrics). The extras (pyproject.toml's ``[project.optional-dependencies]``) add the rest;
:data:`EXTRAS` names, for each, the modules it provides that lossbench imports (a test checks it against the
installed package's metadata).

Example:
    >>> require("compare", "lossbench compare")  # installed here: nothing happens
    >>> print(MissingExtraError("lossbench compare", "compare", ["scipy", "sklearn"]))
    lossbench compare needs the `compare` extra (scipy, sklearn not installed): pip install 'lossbench[compare]'
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType

EXTRAS: dict[str, tuple[str, ...]] = {
    "compare": ("datasets", "sklearn", "scipy", "statsmodels", "matplotlib", "tokenizers"),
    "hf": ("transformers",),
    "ray": ("ray",),
}
"""Extra -> the top-level modules it installs that lossbench imports."""


class MissingExtraError(ImportError):
    """A part of lossbench was used whose extra is not installed; the message says which extra and how."""

    def __init__(self, what: str, extra: str, missing: Sequence[str]) -> None:
        self.extra, self.missing = extra, list(missing)
        super().__init__(
            f"{what} needs the `{extra}` extra ({', '.join(missing)} not installed): pip install 'lossbench[{extra}]'",
            name=self.missing[0] if self.missing else None,
        )


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (none when it is installed)."""
    return [m for m in EXTRAS[extra] if not _importable(m)]


def require(extra: str, what: str) -> None:
    """Raise :class:`MissingExtraError` naming ``extra`` if any of its modules is missing; ``what`` is the part
    used, as the error's first words (``"lossbench compare"``, ``"HFDataModule"``)."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtraError(what, extra, missing)


def import_optional(module: str, extra: str, what: str) -> ModuleType:
    """``module`` imported, or :class:`MissingExtraError` naming ``extra`` when it is not installed (an ImportError
    from inside an installed ``module`` is raised as it is: it is not a missing extra)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != module.split(".")[0]:
            raise
        raise MissingExtraError(what, extra, [module]) from None


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or one without a spec
        return False
