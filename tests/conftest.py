import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

# Small models train far faster single-threaded on shared 2-core machines.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def task_stream():
    """A small task-incremental split of digits (5 experiences), for the Avalanche tests."""
    from bioplastic.data import split_digits

    return split_digits(
        n_experiences=5, scenario="task", max_train_per_experience=48, max_test_per_experience=24
    )


@pytest.fixture(scope="module")
def task_bm(task_stream):
    from strategies.avalanche import avalanche_benchmark

    return avalanche_benchmark(task_stream)
