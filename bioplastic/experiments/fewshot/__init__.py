"""The few-shot benchmark: bio-trained vs backprop-trained backbones on held-out classes.

The package: :mod:`.data` loads the datasets, :mod:`.pretrain` builds, trains and probes the
backbones, :mod:`.evaluate` draws the episodes and scores them, :mod:`.run` drives the loop and
:mod:`.markdown` renders the results.

:func:`run_fewshot_benchmark` does the whole loop for one dataset and returns a JSON-serialisable
dict; :func:`format_markdown` renders it. Per seed and rule:

1. **Pre-training** (methods ``proto``, ``finetune``): a backbone (the same Dale-typed
   initialisation for every rule, except that an MLP has interneurons for bio only,
   :func:`~bioplastic.baselines.interneurons_for`) is trained by
   ordinary classification over all meta-train classes with ``bioplastic.make_optimizer(rule)``
   on 1 - ``holdout_fraction`` of each class's instances; its *clean accuracy* is measured on
   the held-out instances of those classes, and its connectivity, Dale violations and sign
   flips since initialisation with :mod:`bioplastic.probes`.
2. **Evaluation** on meta-test classes (disjoint from meta-train, checked), on the same
   seeded ``ways``-way episodes for every rule (episode seed = run seed; digests are reported):
   ``proto``, nearest prototype of frozen features; ``finetune``, a fresh readout trained for
   ``finetune_steps`` steps by the same rule (:func:`finetune_readout_features`).
3. **MAML** (method ``maml``): a fresh network with ``ways`` outputs is meta-trained on
   meta-train episodes for ``maml_iterations`` outer steps; ``bio``/``eg`` use
   :class:`BioMAML` with a sign-preserving outer optimizer, ``adam``/``sgd`` learn2learn's
   ``MAML`` (see :mod:`bioplastic.experiments.metatrain`); then evaluated on the same test episodes.

Accuracies are reported as mean and 95 % CI over all seed x episode evaluations (the usual
few-shot interval, which ignores training variability; the per-seed means are listed next to
it), and the paired difference ``bio - other`` on the shared episodes with its 95 % CI.

Example::

    results = run_fewshot_benchmark("digits", shots=(1, 5), episodes=600, seeds=3)
    print(format_markdown(results))
"""

from bioplastic.experiments.fewshot.data import DATASETS, FewShotData, load_fewshot_data
from bioplastic.experiments.fewshot.markdown import format_markdown
from bioplastic.experiments.fewshot.run import (
    DATASET_DEFAULTS,
    METHODS,
    RULES,
    run_fewshot_benchmark,
)

__all__ = [
    "DATASETS",
    "DATASET_DEFAULTS",
    "FewShotData",
    "METHODS",
    "RULES",
    "format_markdown",
    "load_fewshot_data",
    "run_fewshot_benchmark",
]
