"""Fairness check: were the runs of one seed really trained under identical setups?

Read from the run records alone. Within each seed, every run must share

- ``fingerprints["backbone_init"]``: the backbone's initial weights,
- ``setup_hash``: data, backbone, optimizer and trainer configuration,
- ``fingerprints["data_order"][epoch]``: the batch order of every epoch both runs trained,
- ``fingerprints["data"][split]``: the contents of every processed split (also across seeds),

and runs whose heads have the same ``fingerprints["head_shape"]`` must share
``fingerprints["head_init"]`` (heads of different shapes cannot share weights).

A run that disagrees with the majority of its seed is marked invalid; when no value
has a strict majority, every run of that seed that carries the fingerprint is marked.
A fingerprint a run does not carry (for instance a run that never started) is not compared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lossbench.compare.store.fingerprints import combine
from lossbench.compare.store.records import RunRecord

_DESCRIPTIONS = {
    "backbone_init": "initial backbone weights (backbone_init)",
    "setup_hash": "setup (setup_hash)",
    "head_init": "initial head weights (head_init)",
}


@dataclass
class FairnessResult:
    """Outcome of :func:`check_fairness`."""

    ok: bool  # True when no problem was found
    problems: list[str] = field(default_factory=list)  # plain sentences, one per disagreement
    invalid: set[tuple[str, int]] = field(default_factory=set)  # (loss, seed) runs whose comparisons are unfair
    checked: dict[int, list[str]] = field(default_factory=dict)  # seed -> losses of the runs compared, sorted

    def seed_ok(self, seed: int) -> bool:
        """True when no run of ``seed`` was marked invalid."""
        return not any(s == seed for _, s in self.invalid)


def as_records(items: Iterable[Any]) -> list[RunRecord]:
    """Accept RunRecords or ``(RunRecord, metrics rows)`` pairs (as :func:`records.load_records` returns)."""
    out = []
    for item in items:
        record = item[0] if isinstance(item, tuple) else item
        if not isinstance(record, RunRecord):
            raise TypeError(f"records: expected RunRecord or (RunRecord, rows) items, got {type(item).__name__}")
        out.append(record)
    return out


def data_fingerprint(record: RunRecord) -> str | None:
    """One sha256 over the per-epoch batch-order hashes in epoch order (``fingerprints.combine``); None without any."""
    order = record.fingerprints.get("data_order") or {}
    if not order:
        return None
    return combine(str(order[epoch]) for epoch in sorted(order, key=_epoch_key))


def data_content_fingerprint(record: RunRecord) -> str | None:
    """One sha256 over the content fingerprints of the processed splits a run trained and was scored on."""
    data = record.fingerprints.get("data") or {}
    if not data:
        return None
    return combine(f"{split}={data[split]}" for split in sorted(data))


def check_fairness(records: Iterable[Any]) -> FairnessResult:
    """Check that the runs of each seed share initial weights, setup and batch order.

    Args:
        records: RunRecords (or ``(RunRecord, rows)`` pairs) of one comparison.

    Returns:
        A :class:`FairnessResult` whose ``problems`` name loss, seed and the differing
        fingerprint, and whose ``invalid`` holds the (loss, seed) runs affected.
    """
    by_seed: dict[int, list[RunRecord]] = {}
    for record in as_records(records):
        by_seed.setdefault(record.seed, []).append(record)

    problems: list[str] = []
    invalid: set[tuple[str, int]] = set()
    checked: dict[int, list[str]] = {}
    for seed in sorted(by_seed):
        runs = sorted(by_seed[seed], key=lambda r: r.loss)
        checked[seed] = [r.loss for r in runs]
        groups = [
            ("backbone", "backbone class and arguments (backbone)", _values(runs, "backbone")),
            ("backbone_init", _DESCRIPTIONS["backbone_init"], _values(runs, "backbone_init")),
            ("teacher", "teacher's logits on the training rows (teacher)", _values(runs, "teacher")),
            ("setup_hash", _DESCRIPTIONS["setup_hash"], {r.loss: r.setup_hash or None for r in runs}),
        ]
        for split in sorted({k for r in runs for k in (r.fingerprints.get("data") or {})}):
            values = {r.loss: (r.fingerprints.get("data") or {}).get(split) for r in runs}
            groups.append((f"data[{split}]", f"contents of the {split!r} split (data)", values))
        epochs = sorted({e for r in runs for e in (r.fingerprints.get("data_order") or {})}, key=_epoch_key)
        for epoch in epochs:
            values = {r.loss: (r.fingerprints.get("data_order") or {}).get(epoch) for r in runs}
            groups.append((f"data_order[{epoch}]", f"batch order of epoch {epoch} (data_order)", values))
        shapes = sorted({str(r.fingerprints["head_shape"]) for r in runs if r.fingerprints.get("head_shape")})
        for shape in shapes:
            values = {
                r.loss: r.fingerprints.get("head_init") for r in runs if str(r.fingerprints.get("head_shape")) == shape
            }
            groups.append(("head_init", f"{_DESCRIPTIONS['head_init']} among heads of shape {shape}", values))
        for _, description, values in groups:
            bad, sentence = _disagreement(seed, description, values)
            if bad:
                problems.append(sentence)
                invalid.update((loss, seed) for loss in bad)
    # across seeds too: every run of a comparison must have trained and been scored on the same data
    everyone = [r for seed in sorted(by_seed) for r in by_seed[seed]]
    for split in sorted({k for r in everyone for k in (r.fingerprints.get("data") or {})}):
        per_run = {(r.loss, r.seed): (r.fingerprints.get("data") or {}).get(split) for r in everyone}
        present = {k: v for k, v in per_run.items() if v}
        if len(set(present.values())) > 1:
            value, count = Counter(present.values()).most_common(1)[0]
            odd = sorted(k for k, v in present.items() if v != value or count * 2 <= len(present))
            if not all(k in invalid for k in odd):
                shown = ", ".join(f"{loss} seed {seed}" for loss, seed in odd)
                problems.append(
                    f"Runs {shown} were trained or scored on different contents of the {split!r} split "
                    "than the other runs of this comparison (data); their comparisons are invalid."
                )
                invalid.update(odd)
    return FairnessResult(ok=not problems, problems=problems, invalid=invalid, checked=checked)


def _values(runs: list[RunRecord], key: str) -> dict[str, Any]:
    return {r.loss: r.fingerprints.get(key) for r in runs}


def _disagreement(seed: int, description: str, values: dict[str, Any]) -> tuple[list[str], str]:
    """Losses that disagree on one fingerprint within one seed, and a sentence saying how."""
    present = {loss: value for loss, value in values.items() if value not in (None, "")}
    if len(set(present.values())) <= 1:
        return [], ""
    counts = Counter(present.values())
    value, count = counts.most_common(1)[0]
    if count * 2 > len(present):
        bad = sorted(loss for loss, v in present.items() if v != value)
        agree = sorted(loss for loss, v in present.items() if v == value)
        sentence = (
            f"Seed {seed}: {_names(bad)} {'has' if len(bad) == 1 else 'have'} a different {description} "
            f"than the majority of runs ({_names(agree)}); "
            f"{'its' if len(bad) == 1 else 'their'} comparisons on seed {seed} are invalid."
        )
        return bad, sentence
    bad = sorted(present)
    shown = ", ".join(f"{loss}={_short(present[loss])}" for loss in bad)
    sentence = (
        f"Seed {seed}: runs disagree on the {description} with no majority ({shown}); "
        f"all comparisons of {_names(bad)} on seed {seed} are invalid."
    )
    return bad, sentence


def _epoch_key(epoch: Any) -> tuple[int, str]:
    """Sort epochs numerically ("10" after "9"); non-numeric keys last, by name."""
    text = str(epoch)
    return (int(text), "") if text.lstrip("-").isdigit() else (1 << 62, text)


def _names(losses: list[str]) -> str:
    return ", ".join(f"'{loss}'" for loss in losses)


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] if len(text) > 12 else text
