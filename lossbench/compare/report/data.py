"""The report's Data section: the splits, and the label noise and imbalance made on purpose (lossbench.data.corrupt)."""

from __future__ import annotations

from typing import Any

from lossbench.compare.report.format import _num, _plain
from lossbench.data.memory import MEMORY_PREFIX

MAX_MATRIX_CLASSES = 20  # a transition matrix up to this many classes; a list beyond


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "|".join("---" for _ in header) + "|", *(line(r) for r in rows)]


def data_section(comparison: dict[str, Any]) -> list[str]:
    data = comparison.get("data") or {}
    if not data:
        return ["## Data", "", "Not recorded (a results folder from an older lossbench).", ""]
    lines = [
        "## Data",
        "",
        f"Source: {source_text((comparison.get('recipe') or {}).get('data') or {})}.",
        "",
        *_table(
            ["split", "source", "rows", "targets", "content fingerprint"],
            [
                [
                    split,
                    info.get("source", "—"),
                    str(info.get("rows", "—")),
                    _targets_text(info),
                    f"`{str(info.get('fingerprint'))[:12]}`",
                ]
                for split, info in data.items()
            ],
        ),
        "",
    ]
    lines += [
        "Validation drives every choice made during a run (curves, steps to target, the selected weights); "
        "the test split is used once per run, for the headline numbers. The fingerprints are of the "
        "processed rows' contents, not of file paths.",
        "",
    ]
    for split, info in data.items():
        lines += imbalance_lines(split, info.get("imbalance")) + noise_lines(split, info.get("label_noise"))
        lines += shared_lines(split, info)
    return lines


def source_text(data: dict[str, Any]) -> str:
    """Where the rows came from: the recipe's ``data.path`` (with ``name`` and ``data_files``), or the in-memory
    dataset's fingerprint (:mod:`lossbench.data.memory`: its name is ``"memory:"`` + the sha256 of its rows)."""
    path = str(data.get("path", "?"))
    if path.startswith(MEMORY_PREFIX):
        return (
            f"an in-memory dataset (a `datasets` object given in Python), fingerprint "
            f"`{path[len(MEMORY_PREFIX) :][:12]}` of its rows as given"
        )
    parts = [f"`{path}`"]
    if data.get("name") is not None:
        parts.append(f"configuration `{data['name']}`")
    if data.get("data_files") is not None:
        parts.append(f"files {data['data_files']!r}")
    return ", ".join(parts)


def shared_lines(split: str, info: dict[str, Any]) -> list[str]:
    """A warning for the rows of ``split`` whose inputs are also rows of an earlier split (leakage)."""
    return [
        line
        for earlier, shared in (info.get("shared_rows") or {}).items()
        for line in (
            f"> **Warning: {shared.get('rows')} of the {info.get('rows')} {split} rows have the same inputs as rows of "
            f"the {earlier} split** (fingerprint of those inputs `{str(shared.get('fingerprint'))[:12]}`): "
            "scores on them measure what the model memorised, not how it generalises; remove them from one of the "
            "splits.",
            "",
        )
    ]


def _targets_text(info: dict[str, Any]) -> str:
    if "class_counts" in info:
        return ", ".join(f"{name}: {count}" for name, count in info["class_counts"].items())
    if info.get("target_mean") is not None:
        return f"mean {_num(info['target_mean'])}, sd {_num(info.get('target_sd'))}"
    return "—"


def imbalance_lines(split: str, info: dict[str, Any] | None) -> list[str]:
    if not info:
        return []
    after, before = info.get("after") or [], info.get("before") or []
    return [
        f"Class imbalance, made on purpose: the {split} split was subsampled to a {info.get('kind')} profile with "
        f"largest/smallest class ratio {_plain(info.get('ratio'))} (seed {info.get('seed')}): class counts "
        f"{', '.join(str(n) for n in after)} (by class id) from {', '.join(str(n) for n in before)}; validation "
        "and test keep their own class balance.",
        "",
    ]


def noise_lines(split: str, info: dict[str, Any] | None) -> list[str]:
    if not info:
        return []
    kinds: dict[Any, str] = {
        "symmetric": "symmetric (a uniformly random other class)",
        "pairflip": "pair-flip (class c -> c + 1 mod C)",
    }
    kind = kinds.get(info.get("kind"), info.get("kind"))
    lines = [
        f"Label noise, made on purpose: {_plain(info.get('rate'))} {kind} on the {split} split (seed "
        f"{info.get('seed')}): {info.get('flipped')} of {info.get('rows')} labels replaced (realised rate "
        f"{_num(info.get('realised_rate'))}; flipped-labels fingerprint `{info.get('flipped_fingerprint')}`). "
        "The test split is never noisy; the class counts above are of the noisy labels.",
        "",
    ]
    pairs = {tuple(int(x) for x in k.split("->")): v for k, v in (info.get("transitions") or {}).items()}
    classes = 1 + max((max(a, b) for a, b in pairs), default=-1)
    if pairs and classes <= MAX_MATRIX_CLASSES:
        lines += [
            f"Realised transitions on the {split} split (rows: true class, columns: given label; flipped rows only):",
            "",
        ]
        lines += _table(
            ["true \\ given", *map(str, range(classes))],
            [
                [str(a), *(str(pairs.get((a, b), "")) if a != b else "·" for b in range(classes))]
                for a in range(classes)
            ],
        )
        lines.append("")
    elif pairs:
        lines += [
            f"Realised transitions on the {split} split: "
            + ", ".join(f"{a}->{b}: {n}" for (a, b), n in sorted(pairs.items())),
            "",
        ]
    return lines
