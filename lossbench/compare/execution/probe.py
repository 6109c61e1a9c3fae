"""The shared-folder probe of the Ray launcher, in a module of its own: a Ray task imports only this (not the
engine, Lightning or the data), so checking every node costs each one a second, not a worker's full start-up."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path
from typing import Any

PROBE_PREFIX = ".lossbench-probe-"  # + token + ".tmp": a temporary file (TEMPORARY_GLOB), deleted after the check


def probe_folder(folder: str, token: str) -> dict[str, Any]:
    """A Ray task on one node: read the driver's probe file in ``folder``, write this node's own."""
    host = socket.gethostname()
    path = Path(folder) / f"{PROBE_PREFIX}{token}.tmp"
    try:
        seen = path.read_text(encoding="utf-8")
    except OSError as exc:
        return {"host": host, "problem": f"cannot read the driver's probe file there ({type(exc).__name__}: {exc})"}
    if seen != token:
        return {"host": host, "problem": "it reads another file than the driver wrote there"}
    mine = Path(folder) / f"{PROBE_PREFIX}{token}-{secrets.token_hex(4)}.tmp"
    try:
        mine.write_text(host, encoding="utf-8")
    except OSError as exc:
        return {"host": host, "problem": f"cannot write there ({type(exc).__name__}: {exc})"}
    return {"host": host, "written": mine.name, "problem": None}
