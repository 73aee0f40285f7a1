import os

import pytest
import torch
from hypothesis import settings

# CI draws the same examples every run (a flaky red CI helps nobody); explore locally with
# HYPOTHESIS_PROFILE=explore pytest tests/test_reliability.py --hypothesis-seed=N
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

os.environ.setdefault("INCEPTIONNET_NO_PROGRESS", "1")
torch.set_num_threads(1)

# The big ImageNet models are slow at any size on 2 cores; these tests mark them `slow` but still run.
BIG_MODELS = {"inception_v4", "inception_resnet_v1", "inception_resnet_v2", "inception_v3"}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


os.environ.setdefault("INCEPTIONNET_NO_DOWNLOAD", "1")
