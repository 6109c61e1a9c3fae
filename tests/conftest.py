import os

import pytest
import torch

# the fused executor's training forward pinned (its `auto` times both paths and keeps the faster: two runs of one
# recipe could then differ in float rounding, and several tests compare runs bit for bit); the tests of `auto` set it
os.environ.setdefault("LOSSBENCH_FUSED_FORWARD", "vmapped")

# the tests use tiny tensors: one thread avoids the thread-pool overhead that dominates them
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
