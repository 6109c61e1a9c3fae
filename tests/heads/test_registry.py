"""Registry: short names, decorator registration, entry-point plugins, errors that help."""

import subprocess
import sys
import textwrap
import warnings

import pytest
import torch

import lossbench
from lossbench import LossHead, UnknownHeadError, get_head, get_head_class, list_heads, register_head
from lossbench.heads import TASKS, DuplicateHeadError, refresh_plugins, registry

REQUIRED = {
    "regression": {"mse", "mae", "huber", "log_cosh", "gaussian_nll", "quantile"},
    "binary": {"bce", "binary_focal", "squared_hinge"},
    "multiclass": {"ce", "label_smoothing", "focal", "poly1", "square", "gce", "sce", "nce_rce", "mae_prob"},
    "distribution": {"kl", "reverse_kl", "js", "soft_ce"},
    "ordinal": {"coral"},
    "lm": {"lm_ce"},
}

PLUGIN_HEAD = '''
import torch
from lossbench import LossHead
from lossbench.functional import mae_loss


class PluginMAE(LossHead):
    """MAE from a separately installed package."""

    task = "regression"

    def __init__(self, in_features: int):
        super().__init__(in_features, 1, squeeze=True)

    def _loss(self, outputs, target, reduction):
        return mae_loss(outputs, target, reduction=reduction)
'''


def install_fake_dist(root, dist: str, entry_points: dict[str, str], modules: dict[str, str]) -> None:
    """Write an installed distribution (a .dist-info with entry points) and its modules under ``root``."""
    info = root / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[lossbench.heads]\n{lines}\n")
    for name, source in modules.items():
        (root / f"{name}.py").write_text(textwrap.dedent(source))


@pytest.fixture
def plugin_path(tmp_path, monkeypatch):
    """A sys.path entry for fake installed plugins; the registry forgets them afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    refresh_plugins()
    yield tmp_path
    monkeypatch.undo()
    for mod in [m for m in sys.modules if m.startswith("lbplug_")]:
        del sys.modules[mod]
    refresh_plugins()


def test_required_heads_are_registered_with_their_task():
    by_task = {}
    for info in list_heads():
        by_task.setdefault(info.task, set()).add(info.name)
        assert info.source == "built-in"
        assert info.summary and info.task in TASKS
        assert info.cls.name == info.name
    for task, names in REQUIRED.items():
        assert names <= by_task.get(task, set()), (task, names - by_task.get(task, set()))
    assert len(list_heads()) >= 25


def test_get_head_builds_with_arguments():
    head = get_head("focal", in_features=16, num_classes=10, gamma=1.5)
    assert head.gamma == 1.5 and head.num_classes == 10 and head(torch.randn(3, 16)).shape == (3, 10)


def test_unknown_head_lists_nearest_names():
    with pytest.raises(UnknownHeadError, match=r"unknown head name 'focall'; did you mean 'focal'"):
        get_head("focall", in_features=4)
    with pytest.raises(UnknownHeadError, match="'binary_focal'"):
        get_head("binary_focall", in_features=4)


def test_decorator_registration_and_duplicates():
    @register_head("test_only_head")
    class First(LossHead):
        """First."""

        task = "regression"

        def __init__(self, in_features: int):
            super().__init__(in_features, 1, squeeze=True)

        def _loss(self, outputs, target, reduction):
            return lossbench.functional.mse_loss(outputs, target, reduction=reduction)

    try:
        assert get_head_class("test_only_head") is First
        register_head("test_only_head")(First)  # the same class again is harmless
        with pytest.raises(DuplicateHeadError, match=r"registered twice: by module .*First.* and by module .*Second"):

            @register_head("test_only_head")
            class Second(First):
                """Second."""

        with pytest.raises(DuplicateHeadError, match="registered twice: by built-in"):
            register_head("mse")(First)
    finally:
        registry._registry.pop("test_only_head", None)


def test_register_head_refuses_non_heads_and_bad_names():
    with pytest.raises(TypeError, match="expected a LossHead subclass"):
        register_head("not_a_head")(torch.nn.Linear)
    with pytest.raises(ValueError, match="`name` must be an identifier-like string, got 'two words'"):
        register_head("two words")


def test_plugin_from_an_installed_distribution(plugin_path):
    install_fake_dist(plugin_path, "lbplug-dist", {"plugin_mae": "lbplug_mod:PluginMAE"}, {"lbplug_mod": PLUGIN_HEAD})
    assert "lbplug_mod" not in sys.modules  # lazily imported
    names = {i.name: i for i in list_heads()}
    assert names["plugin_mae"].source == "plugin lbplug-dist"
    assert names["plugin_mae"].summary == "MAE from a separately installed package."
    head = get_head("plugin_mae", in_features=3)
    assert type(head).__name__ == "PluginMAE" and head.task == "regression"
    from lossbench.testing import check_head

    check_head(head)


def test_plugin_is_imported_only_when_asked_for(plugin_path):
    install_fake_dist(
        plugin_path, "lbplug-lazy", {"plugin_lazy": "lbplug_lazy:PluginMAE"}, {"lbplug_lazy": PLUGIN_HEAD}
    )
    get_head("ce", in_features=4, num_classes=3)
    assert "lbplug_lazy" not in sys.modules
    get_head("plugin_lazy", in_features=4)
    assert "lbplug_lazy" in sys.modules


def test_broken_plugin_warns_once_and_others_keep_working(plugin_path):
    install_fake_dist(
        plugin_path,
        "lbplug-broken",
        {"broken_head": "lbplug_broken:Missing"},
        {"lbplug_broken": "raise ImportError('needs a library that is not installed')"},
    )
    with pytest.warns(RuntimeWarning, match=r"plugin 'broken_head' from plugin lbplug-broken .* failed to load"):
        names = {i.name for i in list_heads()}
    assert "broken_head" not in names and "ce" in names
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second listing does not warn again
        list_heads()
        get_head("mse", in_features=2)
    with pytest.raises(UnknownHeadError, match="failed to load: ImportError: needs a library"):
        get_head("broken_head", in_features=2)


def test_plugin_name_colliding_with_a_builtin_names_both(plugin_path):
    install_fake_dist(plugin_path, "lbplug-clash", {"focal": "lbplug_clash:PluginMAE"}, {"lbplug_clash": PLUGIN_HEAD})
    with pytest.raises(
        DuplicateHeadError, match=r"'focal' is registered twice: by built-in .*FocalHead.* and by plugin lbplug-clash"
    ):
        get_head("focal", in_features=2, num_classes=3)
    get_head("ce", in_features=2, num_classes=3)  # other names keep working


def test_two_plugins_with_one_name_name_both(plugin_path):
    install_fake_dist(plugin_path / "a", "lbplug-a", {"twin": "lbplug_a:PluginMAE"}, {"lbplug_a": PLUGIN_HEAD})
    install_fake_dist(plugin_path / "b", "lbplug-b", {"twin": "lbplug_b:PluginMAE"}, {"lbplug_b": PLUGIN_HEAD})
    sys.path[:0] = [str(plugin_path / "a"), str(plugin_path / "b")]
    try:
        refresh_plugins()
        with pytest.raises(
            DuplicateHeadError, match=r"'twin' is registered twice: by plugin lbplug-\w .* and by plugin lbplug-\w"
        ):
            get_head("twin", in_features=2)
    finally:
        sys.path.remove(str(plugin_path / "a"))
        sys.path.remove(str(plugin_path / "b"))


def test_plugin_that_is_not_a_head_is_skipped_with_a_warning(plugin_path):
    install_fake_dist(
        plugin_path, "lbplug-notahead", {"nothead": "lbplug_nothead:thing"}, {"lbplug_nothead": "thing = 3"}
    )
    with pytest.warns(RuntimeWarning, match="is not a LossHead subclass"):
        list_heads()


def test_cli_lists_builtin_and_plugin_heads(tmp_path):
    install_fake_dist(tmp_path, "lbplug-cli", {"cli_mae": "lbplug_cli:PluginMAE"}, {"lbplug_cli": PLUGIN_HEAD})
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, "-m", "lossbench.cli", "heads"], capture_output=True, text=True, env=env, check=True
    ).stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "plugin lbplug-cli" in rows["cli_mae"] and "regression" in rows["cli_mae"]
    assert "built-in" in rows["focal"] and "multiclass" in rows["focal"]
    count = int(out.strip().splitlines()[-1].split()[0])
    assert count >= 26


@pytest.mark.slow
def test_pip_installed_example_plugin_appears_in_cli_and_get_head(tmp_path):
    """examples/plugin is a real package: pip-install it into a target dir and use it by name."""
    import os
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "plugin"
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(example)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run(
        [sys.executable, "-m", "lossbench.cli", "heads", "--task", "regression"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    assert any(line.startswith("cauchy") and "plugin lossbench-example-plugin" in line for line in out.splitlines())
    code = (
        "import torch; from lossbench import get_head; from lossbench.testing import check_head;"
        "h = get_head('cauchy', in_features=4, scale=2.0); check_head(h); print(type(h).__name__, h.scale)"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert run.stdout.split() == ["CauchyHead", "2.0"]
