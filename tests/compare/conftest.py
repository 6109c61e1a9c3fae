import pytest


def tiny_recipe(**changes):
    """A wine comparison that trains in about a second per run."""
    recipe = {
        "name": "tiny",
        "data": {"path": "lossbench:wine", "batch_size": 32},
        "backbone": {"d_model": 8, "nhead": 2, "num_layers": 1},
        "losses": ["ce", {"name": "focal", "args": {"gamma": 2.0}}, "sce"],
        "baseline": "ce",
        "optimizer": {"name": "adamw", "lr": 0.01},
        "trainer": {"max_steps": 8, "eval_every_n_steps": 4},
        "seeds": [0, 1],
        "target": {"metric": "val/accuracy", "mode": "max", "threshold": 0.5},
        # these suites test the run-by-run machinery (one checkpoint per run); tests/compare/test_fused*.py
        # test the default fused executor against it
        "executor": "sequential",
    }
    for dotted, value in changes.items():
        node = recipe
        *parents, last = dotted.split("__")
        for key in parents:
            node = node[key]
        node[last] = value
    # the machinery's tests (kill -9 at a chosen step) need a resume point after every evaluation
    recipe["trainer"].setdefault("checkpoint_every_s", 0)
    return recipe


@pytest.fixture
def tiny():
    return tiny_recipe
