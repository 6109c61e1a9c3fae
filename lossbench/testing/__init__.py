"""Conformance kit for loss heads: one call checks a head against the lossbench contract.

Put this in your own test suite::

    from lossbench.testing import check_head
    check_head(MyHead(in_features=8, num_classes=5))

or parametrize over the checks to see each one pass or fail on its own::

    @pytest.mark.parametrize("check", CHECKS)
    def test_my_head(check):
        LossHeadTester(MyHead(in_features=8, num_classes=5)).run(check)
"""

from lossbench.testing.tester import CHECKS, LossHeadTester, check_head, default_target

__all__ = ["CHECKS", "LossHeadTester", "check_head", "default_target"]
