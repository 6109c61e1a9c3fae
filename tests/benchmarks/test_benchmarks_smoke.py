"""Smoke tests of the benchmarks: each runs quick and prints its table (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    """``benchmarks/<name>`` with ``args``, from the repository root; it must exit 0."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / name), *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def test_heads_benchmark_quick_runs_and_prints_a_table(tmp_path):
    out = tmp_path / "bench.json"
    proc = script("heads.py", "--quick", "--heads", "mse,ce", "--json", str(out))
    lines = proc.stdout.splitlines()
    header = next((line for line in lines if line.startswith("| head ")), None)
    assert header is not None, proc.stdout
    for column in ("task", "baseline kind", "ours us", "baseline us", "ratio"):
        assert column in header, header
    body = [line for line in lines if line.startswith("| ") and not line.startswith("| head ")]
    rows = {line.split("|")[1].strip(): line for line in body}
    assert {"mse", "ce"} <= set(rows), proc.stdout
    assert "torch loss" in rows["mse"] and "torch loss" in rows["ce"], proc.stdout
    assert "ERROR" not in proc.stdout
    assert out.exists() and '"training"' in out.read_text()


def test_fused_benchmark_quick_runs_all_three_cases(tmp_path):
    out = tmp_path / "fused.json"
    proc = script("fused.py", "--quick", "--json", str(out))
    results = json.loads(out.read_text())
    assert set(results) == {"a", "b", "c"}
    for case in results.values():
        assert case["fused/sequential"] > 0 and len(case["seconds"]["fused"]) == 1
    assert results["a"]["fused/loop"] > 0 and "sequential/loop" in results["a"]
    assert "(a) median fused" in proc.stdout


def test_the_gpu_benchmark_runs_on_a_cpu_as_a_smoke_test(tmp_path):
    """benchmarks/fused_gpu.py (what a lent GPU machine runs) on the CPU: its table and JSON, fused and sequential
    trained for the same steps (throughputs positive; no timing is asserted)."""
    out = tmp_path / "gpu.json"
    proc = script(
        "fused_gpu.py", "--device", "cpu", "--quick", "--cases", "a,d", "--precisions", "32-true", "--json", str(out)
    )
    results = json.loads(out.read_text())
    assert results["device"] == "cpu" and [r["case"] for r in results["results"]] == ["a", "d"]
    for row in results["results"]:
        assert row["members"] == 3 and row["fused_throughput"] > 0 and row["sequential_throughput"] > 0
    assert "| (d) | 3 | 32-true |" in proc.stdout
