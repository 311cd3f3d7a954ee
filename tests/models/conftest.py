"""Model tests: tiny models run fastest on one thread; on a shared CPU more threads mostly wait."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
