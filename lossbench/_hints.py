"""The "did you mean" hint of every error that refuses an unknown name (heads, datasets, settings, configs)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: object, choices: Iterable[str], n: int = 3) -> str:
    """``"; did you mean 'a', 'b'?"`` naming up to ``n`` of ``choices`` close to ``word``, or ``""`` when none is.

    Example:
        >>> did_you_mean("focla", ["focal", "poly1", "ce"])
        "; did you mean 'focal'?"
        >>> did_you_mean("xyz", ["focal"])
        ''
    """
    close = difflib.get_close_matches(str(word), list(choices), n=n, cutoff=0.5)
    return f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
