"""Suite-wide settings.

Torch runs on one thread in the tests: the models are tiny, and on a small shared CPU two
spinning OpenMP threads were measured several times slower than one (see
the README, "Training and evaluating the paper's experiments"). Tests that need more threads set them themselves.
"""

import signal

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler for a test that sends itself SIGINT: a process started in
    the background by a non-interactive shell inherits SIGINT ignored, and the signal would
    then never arrive as KeyboardInterrupt."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
