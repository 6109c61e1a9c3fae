"""Importing a class a user names by dotted path (a head's or a backbone's ``class_path``): one rule, one error style.

Importing runs that module's code, which is documented wherever a class path is accepted; a module that calls
``sys.exit`` while imported becomes an error instead of ending the caller.
"""

from __future__ import annotations

import importlib


def import_class(class_path: str, where: str, base: type, base_name: str, what: str) -> type:
    """The class ``class_path`` names, a subclass of ``base``; a ValueError naming ``where.class_path`` otherwise.

    Args:
        class_path: ``"package.module.Class"``.
        where: how the caller names the setting (``"losses[0]"``, ``"backbone"``).
        base: the class it must subclass, shown as ``base_name``.
        what: what the class is (``"head"``), for the message about a module that exits.
    """
    module, _, name = class_path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"`{where}.class_path` {class_path!r} cannot be imported: {exc}") from exc
    except SystemExit as exc:  # a module that exits on import must not end the caller with its code
        raise ValueError(
            f"`{where}.class_path` {class_path!r}: importing {module!r} called sys.exit({exc.code!r}); "
            f"a {what}'s module must not exit when imported"
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise ValueError(f"`{where}.class_path` {class_path!r} is not a {base_name} subclass")
    return cls
