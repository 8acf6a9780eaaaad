import os
import sys

import pytest
import torch

# The machine (and CI) has 2 cores: fixed threads make runs comparable and avoid oversubscription.
torch.set_num_threads(int(os.environ.get('GB_TEST_THREADS', '2')))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # tests/helpers.py


def pytest_configure(config):
    config.addinivalue_line('markers', 'slow: end-to-end training runs (minutes on 2 CPU cores)')


@pytest.fixture(scope='session')
def repo_root():
    from helpers import ROOT
    return ROOT
