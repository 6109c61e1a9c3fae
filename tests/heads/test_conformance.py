"""Every registered head passes the conformance kit: a new head is tested by registering it."""

import pytest

import lossbench
from lossbench.testing import CHECKS, LossHeadTester, check_head
from tests.helpers import build_head

HEADS = [info.name for info in lossbench.list_heads()]


def test_registry_has_at_least_25_heads():
    assert len(HEADS) >= 25, HEADS


@pytest.mark.parametrize("check", CHECKS)
@pytest.mark.parametrize("name", HEADS)
def test_head_conformance(name, check):
    LossHeadTester(build_head(name)).run(check)


@pytest.mark.parametrize("name", ["ce", "focal", "lm_ce", "lm_ce_fused", "coral"])
def test_token_level_heads_conform(name):
    """Token-level variants: features (N, T, F) -> outputs (N, T, ...) for targets (N, T)."""
    check_head(build_head(name), batch_shape=(2, 4))


def test_check_head_runs_every_check_with_a_reference():
    import torch.nn.functional as F

    check_head(build_head("ce"), reference=lambda out, y: F.cross_entropy(out, y))
