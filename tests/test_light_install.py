"""The light install (``pip install lossbench``, no extra): what it gives, and what it tells about the rest.

The light environment is built from this installation, without the network: a folder holding exactly the
distributions that ``pip install lossbench`` resolves to (lossbench's requirements without extras, followed
recursively through the installed packages' metadata), linked from site-packages, run by ``python -S`` so that
nothing else is importable. ``benchmarks/install_sizes.py`` does the same with real venvs and reports the sizes.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import lossbench
from lossbench._extras import EXTRAS

pytestmark = pytest.mark.slow
ABSENT = [m for modules in EXTRAS.values() for m in modules] + ["pandas", "pyarrow"]


def _closure(name: str, extras: frozenset[str] = frozenset()) -> dict[str, md.Distribution]:
    """Name -> distribution of ``name`` and everything it requires (with ``extras``), as pip would resolve it."""
    seen: dict[str, md.Distribution] = {}
    todo = [(name, extras)]
    while todo:
        dist_name, wanted = todo.pop()
        dist = md.distribution(dist_name)
        key = canonicalize_name(dist.metadata["Name"])
        if key in seen and not wanted:
            continue
        seen[key] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or any(req.marker.evaluate({"extra": e}) for e in {"", *wanted}):
                if canonicalize_name(req.name) != "lossbench":
                    todo.append((req.name, frozenset(req.extras)))
    return seen


@pytest.fixture(scope="module")
def light(tmp_path_factory):
    """A folder with lossbench and its required distributions only; returns a runner of Python code there."""
    root = tmp_path_factory.mktemp("light")
    site = root / "site"
    site.mkdir()
    for key, dist in _closure("lossbench").items():
        if key == "lossbench":
            continue
        for f in dist.files or []:
            top = Path(f).parts[0]
            if top in ("..", "__pycache__") or (site / top).exists():
                continue
            source = Path(dist.locate_file(top))
            if source.exists():
                (site / top).symlink_to(source)
    (site / "lossbench").symlink_to(Path(lossbench.__file__).parent)
    info = site / f"lossbench-{lossbench.__version__}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: lossbench\nVersion: {lossbench.__version__}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")} | {"PYTHONPATH": str(site)}

    def run(code: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-S", "-c", textwrap.dedent(code)],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    return run


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_the_light_install_lacks_the_comparison_packages(light):
    """The premise of the tests below: none of the extras' modules (nor pandas, pyarrow) can be imported there."""
    out = _ok(light(f"import importlib.util as u; print([m for m in {ABSENT!r} if u.find_spec(m)])"))
    assert out.strip() == "[]"


def test_heads_functional_and_module_train_without_the_extras(light):
    out = _ok(
        light(
            """
            import sys, torch, lightning as L
            from torch.utils.data import DataLoader
            import lossbench
            from lossbench import LossbenchModule, functional as F, get_head
            from lossbench.data import DataSpec

            x, y = torch.randn(4, 3), torch.tensor([0, 2, 1, 0])
            ref = torch.nn.functional.cross_entropy(x, y)
            assert torch.allclose(F.cross_entropy(x, y), ref)
            assert get_head("focal", in_features=3, num_classes=3).task == "multiclass"

            torch.manual_seed(0)
            data = [{"inputs": torch.randn(8, 4), "target": torch.randint(0, 3, (8,))} for _ in range(4)]
            spec = DataSpec("features", "class", num_classes=3, num_features=4)
            model = LossbenchModule("poly1", data_spec=spec, backbone={"d_model": 16, "nhead": 2}, seed=0)
            trainer = L.Trainer(max_steps=3, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                                enable_model_summary=False, accelerator="cpu")
            trainer.fit(model, DataLoader(data, batch_size=None))
            assert trainer.global_step == 3
            print(sorted(m for m in sys.modules if m.split(".")[0] in {ABSENT}))
            """.replace("{ABSENT}", repr(set(ABSENT)))
        )
    )
    assert out.strip().splitlines()[-1] == "[]"


def test_the_light_commands_run_there_without_lightning(light):
    out = _ok(
        light(
            """
            import contextlib, io, sys
            from lossbench.cli import main
            for argv in (["--version"], ["recipes"], ["heads"]):
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf):
                    assert main(argv) == 0, argv
                print(argv[0], len(buf.getvalue().splitlines()), buf.getvalue().splitlines()[0])
            print("lightning" in sys.modules, "torchmetrics" in sys.modules)
            """
        )
    )
    lines = out.strip().splitlines()
    assert lines[0] == f"--version 1 {lossbench.__version__}"
    assert lines[1].startswith("recipes ") and int(lines[1].split()[1]) > 5
    assert lines[2].startswith("heads ") and int(lines[2].split()[1]) > 20
    assert lines[-1] == "False False"


MISSING = (
    r"needs the `compare` extra \((datasets|sklearn|scipy|statsmodels|matplotlib|tokenizers)(, \w+)* not installed\): "
    r"pip install 'lossbench\[compare\]'"
)


@pytest.mark.parametrize(
    "argv, prefix",
    [
        (["compare", "digits", "--output", "out"], "lossbench compare "),
        (["report", "out"], "lossbench report "),
        (
            ["fit", "--config", "fit_digits", "--trainer.max_steps", "1"],
            "lossbench fit: HFDataModule (loading data with `datasets`) ",
        ),
    ],
)
def test_the_comparison_commands_say_which_extra_in_one_line(light, argv, prefix):
    proc = light(f"import sys; from lossbench.cli import main; sys.exit(main({argv!r}))")
    assert proc.returncode == 69, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.strip().splitlines() if not line.startswith("Seed set to")]  # Lightning's
    assert len(lines) == 1, proc.stderr
    assert re.fullmatch(re.escape(prefix) + MISSING, lines[0]), lines[0]


def test_the_comparison_api_says_which_extra(light):
    out = _ok(
        light(
            """
            import lossbench
            from lossbench._extras import MissingExtraError
            for attempt in (lambda: lossbench.compare("digits"),
                            lambda: lossbench.compare.ComparisonResult,
                            lambda: __import__("lossbench.compare.report.render"),
                            lambda: __import__("lossbench.data").data.HFDataModule("digits")):
                try:
                    attempt()
                except MissingExtraError as exc:
                    print(exc)
                else:
                    raise AssertionError("no error")
            print(lossbench.compare.bundled_recipes()["digits"].name)  # the recipes themselves are light
            """
        )
    )
    lines = out.strip().splitlines()
    assert [line.split(" needs ")[0] for line in lines[:4]] == [
        "lossbench.compare(...)",
        "lossbench.compare.analysis",
        "lossbench.compare.report",
        "HFDataModule (loading data with `datasets`)",
    ]
    assert all("pip install 'lossbench[compare]'" in line for line in lines[:4])
    assert lines[4] == "digits.yaml"


def test_each_extra_names_the_modules_its_distributions_install():
    """``_extras.EXTRAS`` against the installed metadata: every distribution an extra requires provides one of
    the modules named for it, and every module named comes from one of them."""
    providers = md.packages_distributions()
    for extra, modules in EXTRAS.items():
        dists = {
            canonicalize_name(Requirement(line).name)
            for line in md.distribution("lossbench").requires or []
            if Requirement(line).marker is not None and Requirement(line).marker.evaluate({"extra": extra})
        }
        provided = {canonicalize_name(d) for m in modules for d in providers.get(m, [])}
        assert provided == dists, (extra, provided, dists)
