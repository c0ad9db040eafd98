"""BioPlastic keeps Avalanche's template defaults, so Avalanche's own scenarios run unchanged.

Avalanche 0.6.0's ``test_periodic_eval`` (tests/training/test_strategies.py) with ``BioPlastic``
in place of ``Naive``: same model (``SimpleMLP`` with an ``IncrementalClassifier``), same data
(10 classes of 6 features, 100 samples per class, 60% train, 5 experiences), same arguments.
"""

from __future__ import annotations

import inspect

import pytest
import torch

pytest.importorskip("avalanche")

from avalanche.benchmarks import nc_benchmark  # noqa: E402
from avalanche.evaluation.metrics import StreamAccuracy  # noqa: E402
from avalanche.models import IncrementalClassifier, SimpleMLP  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402
from avalanche.training.templates import SupervisedTemplate  # noqa: E402
from sklearn.datasets import make_classification  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

from strategies.avalanche import (  # noqa: E402
    COMMON,
    BioPlastic,
    make_strategy,
    tensor_classification_dataset,
)

pytestmark = pytest.mark.filterwarnings("ignore")

CURVE = "Top1_Acc_Stream/eval_phase/train_stream/Task000"


def _fast_benchmark():
    """Avalanche's ``get_fast_benchmark()`` (tests/unit_tests_utils.py), rebuilt here."""
    x, y = make_classification(
        n_samples=1000, n_classes=10, n_features=6, n_informative=6, n_redundant=0,
        random_state=42,
    )  # fmt: skip
    x, y = torch.from_numpy(x).float(), torch.from_numpy(y).long()
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, train_size=0.6, shuffle=True, stratify=y, random_state=42
    )
    train = tensor_classification_dataset(x_tr, y_tr)
    test = tensor_classification_dataset(x_te, y_te)
    return nc_benchmark(train, test, 5, task_labels=False, shuffle=True, seed=None)


def test_bioplastic_keeps_avalanches_template_defaults():
    template = inspect.signature(SupervisedTemplate.__init__).parameters
    ours = inspect.signature(BioPlastic.__init__).parameters
    for name in ("train_mb_size", "train_epochs", "eval_mb_size", "eval_every", "peval_mode"):
        expected = template[name].default
        got = ours[name].default if name in ours else expected  # peval_mode: via **base_kwargs
        assert got == expected, name
    strategy = BioPlastic(model=SimpleMLP(num_classes=4, input_size=8), evaluator=None)
    assert (strategy.train_mb_size, strategy.train_epochs, strategy.eval_mb_size) == (1, 1, 1)
    # make_strategy keeps giving the settings our results use
    built = make_strategy("bio", SimpleMLP(num_classes=4, input_size=8), evaluator=None)
    assert built.train_mb_size == COMMON["train_mb_size"] == 32
    assert built.train_epochs == COMMON["train_epochs"]
    assert built.eval_mb_size == COMMON["eval_mb_size"]


@pytest.mark.parametrize(
    ("eval_every", "peval_mode", "expected"),
    [(-1, "epoch", 0), (0, "epoch", 2), (1, "epoch", 3), (100, "iteration", 5)],
)
def test_avalanche_periodic_eval_with_bioplastic(eval_every, peval_mode, expected):
    """Cases 1-4 of Avalanche's test_periodic_eval, Naive replaced by BioPlastic.

    Case 4 (iteration mode, every 100 iterations) counts on mini-batches of 1: 120 samples x 2
    epochs = 240 iterations. With mini-batches of 32 (8 iterations) it got 2 curve points.
    """
    torch.manual_seed(0)
    benchmark = _fast_benchmark()
    model = SimpleMLP(input_size=6, hidden_size=10)
    model.classifier = IncrementalClassifier(model.classifier.in_features)
    strategy = BioPlastic(
        model=model,
        train_epochs=2,
        eval_every=eval_every,
        evaluator=EvaluationPlugin(StreamAccuracy()),
        peval_mode=peval_mode,
        device="cpu",
    )
    strategy.train(benchmark.train_stream[0])
    metrics = strategy.evaluator.get_all_metrics()
    curve = metrics[CURVE][1] if expected else []
    assert len(metrics) == 0 if expected == 0 else len(curve) == expected
