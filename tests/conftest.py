import pytest
import torch

# the tests use tiny tensors: one thread avoids the thread-pool overhead that dominates them
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
