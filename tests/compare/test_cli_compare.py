"""`lossbench compare`, `lossbench report` and `lossbench recipes` as a user runs them."""

import os
import subprocess
import sys

import pytest

from lossbench.cli import main


def run(*args, cwd=None):
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lossbench.cli", *args], capture_output=True, text=True, env=env, cwd=cwd
    )


def test_recipes_lists_the_bundled_ones(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    for name in ("digits", "breast_cancer", "diabetes", "wine"):
        assert any(line.startswith(name) for line in out.splitlines())


def test_print_config_prints_the_resolved_recipe_which_runs_as_given(capsys, tmp_path):
    from lossbench.compare import load_recipe

    assert (
        main(
            [
                "compare",
                "digits_tuned",
                "--print_config",
                "--tune.trials",
                "4",
                "--trainer.max_epochs",
                "2",
                "--seeds",
                "2",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    path = tmp_path / "resolved.yaml"
    path.write_text(text)
    again, given = (
        load_recipe(path),
        load_recipe("digits_tuned", overrides={"tune.trials": 4, "trainer.max_epochs": 2}, seeds=2),
    )
    assert again.to_dict() == given.to_dict() and again.setup_hash == given.setup_hash
    assert "checkpoint_every_s: 60" in text and "trials: 4" in text  # defaults filled in, overrides applied
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_compare_then_report_rerenders_identically(tmp_path):
    out = tmp_path / "cmp"
    first = run(
        "compare",
        "wine",
        "--output",
        str(out),
        "--seeds",
        "1",
        "--losses",
        "gce",
        "--trainer.max_epochs",
        "2",
        "--trainer.eval_every_n_steps=4",
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert f"report: {out / 'report.md'}" in first.stdout
    assert "[1/2] ce seed 0" in first.stdout and "[2/2] gce seed 0" in first.stdout
    report, results = (out / "report.md").read_bytes(), (out / "results.csv").read_bytes()
    assert b"gce" in report and b"![" in report
    again = run("report", str(out))
    assert again.returncode == 0, again.stderr
    assert (out / "report.md").read_bytes() == report and (out / "results.csv").read_bytes() == results
    # a bundled recipe: results.csv and the report lead with test metrics; the Data section lists the splits
    header = results.decode().splitlines()[0].split(",")
    assert header[:5] == ["loss", "seed", "status", "fairness", "test/accuracy"], header
    assert b"| gce | 1 | " in report and b"## Data" in report and b"| test | given: split 'test'" in report
    checked = run("report", str(out), "--recompute")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "recomputed 2 finished run(s)" in checked.stdout and "all equal to the records" in checked.stdout
    rerun = run(
        "compare",
        "wine",
        "--output",
        str(out),
        "--seeds",
        "1",
        "--losses",
        "gce",
        "--trainer.max_epochs",
        "2",
        "--trainer.eval_every_n_steps=4",
    )
    assert rerun.returncode == 0 and "finished earlier, skipped" in rerun.stdout


def test_bad_invocations_exit_2_with_a_message(tmp_path, capsys):
    assert main(["compare", "digitz", "--output", str(tmp_path / "x")]) == 2
    assert "did you mean 'digits'" in capsys.readouterr().err
    assert main(["compare", "digits", "--output", str(tmp_path / "x"), "--trainer.max_epochs", "0"]) == 2
    assert "`trainer.max_epochs` must be a positive int, got 0" in capsys.readouterr().err
    assert main(["compare", "digits", "stray"]) == 2
    assert "lossbench compare: unexpected argument 'stray'" in capsys.readouterr().err
    assert main(["compare", "digits", "--trainer.max_epochs"]) == 2
    assert "override '--trainer.max_epochs' needs a value" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "not a lossbench comparison folder" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
