import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

# Small models train far faster single-threaded on shared 2-core machines.
torch.set_num_threads(1)


def make_mlp(*sizes: int, seed: int | None = None, dale: bool = False) -> nn.Sequential:
    """A small ReLU MLP: ``make_mlp(6, 5, 3)`` is ``Linear(6, 5), ReLU, Linear(5, 3)``.

    ``seed`` reseeds torch before the layers are built (default: use the current stream, which
    the autouse ``_seed`` fixture sets per test); ``dale=True`` types it with
    :func:`bioplastic.dalify` (same seed). Importable as ``from conftest import make_mlp`` where
    a fixture cannot reach (parametrize lists, module-level helpers); tests use ``mlp``.
    """
    if len(sizes) < 2:
        raise ValueError(f"make_mlp needs at least an input and an output size, got {sizes}")
    if seed is not None:
        torch.manual_seed(seed)
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])
    if dale:
        import bioplastic

        model = bioplastic.dalify(model, seed=0 if seed is None else seed)
    return model


def load_benchmark(name: str):
    """The script ``benchmarks/<name>.py`` as a module (the benchmarks are not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def assert_bio_rule_trains_keeping_signs(model: nn.Module, x, y, steps: int, **rule) -> None:
    """Step ``BioRule(**rule)`` ``steps`` times on ``(x, y)``: the loss falls, every present
    synapse keeps its sign and no layer breaks Dale's law. ``from conftest import ...``."""
    import bioplastic
    from bioplastic.probes import dale_violations, synaptic_layers

    signs = {n: p.detach().sign().clone() for n, p in model.named_parameters() if p.dim() > 1}
    opt = bioplastic.BioRule(model.parameters(), **rule)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        losses.append(loss.item())
        loss.backward()
        opt.step()
    assert losses[-1] < losses[0]
    for n, p in model.named_parameters():
        if p.dim() > 1:
            present = p != 0
            assert torch.equal(p.sign()[present], signs[n][present]), n
    assert all(dale_violations(m) == 0 for _, m in synaptic_layers(model))


@pytest.fixture(scope="session")
def mlp():
    """The :func:`make_mlp` factory, as a fixture."""
    return make_mlp


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
