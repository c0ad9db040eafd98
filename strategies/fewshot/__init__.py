"""learn2learn integration: few-shot learning and evaluation with the bio rule.

* :class:`BioMAML` (``maml``): MAML whose inner step is :func:`bioplastic.functional.bio_update`;
* :class:`BioMetaSGD` (``metasgd``): the same with a learned rate per synapse (Meta-SGD);
* :class:`ProtoEvaluator` (``proto``) and :func:`finetune_readout` (``finetune``): evaluation of
  frozen backbones on episodes;
* :func:`make_taskset`, :func:`seeded_random`, :func:`index_episodes` (``tasksets``): seeded
  learn2learn ``TaskDataset`` episodes and shared index episodes;
* :func:`load_omniglot` (``omniglot``): Omniglot from a local folder with leak-free splits;

This package needs learn2learn (``pip install 'bioplastic[fewshot]'``).
"""

from bioplastic._compat import import_learn2learn

import_learn2learn()  # first, so that no learn2learn import prints gym's deprecation banner

from strategies.fewshot.finetune import finetune_readout, finetune_readout_features
from strategies.fewshot.maml import BioMAML
from strategies.fewshot.metasgd import BioMetaSGD
from strategies.fewshot.omniglot import (
    OmniglotSplit,
    load_omniglot,
    omniglot_class_splits,
    omniglot_classes,
    open_full_omniglot,
)
from strategies.fewshot.proto import ProtoEvaluator, embed, mean_ci, prototype_accuracy
from strategies.fewshot.tasksets import (
    episode_classes,
    episodes_digest,
    index_episodes,
    make_taskset,
    seeded_random,
    split_support_query,
)

__all__ = [
    "BioMAML",
    "BioMetaSGD",
    "OmniglotSplit",
    "ProtoEvaluator",
    "embed",
    "episode_classes",
    "episodes_digest",
    "finetune_readout",
    "finetune_readout_features",
    "index_episodes",
    "load_omniglot",
    "make_taskset",
    "mean_ci",
    "omniglot_class_splits",
    "omniglot_classes",
    "open_full_omniglot",
    "prototype_accuracy",
    "seeded_random",
    "split_support_query",
]
