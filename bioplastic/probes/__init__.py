"""Probes: pure measurements of weights, activity and task encoding (SPEC section 4).

Every function here reads tensors or modules and returns numbers or tensors; nothing is modified
(``record_activations`` restores the model's training flags and removes its hooks). The Avalanche
metrics in ``strategies`` wrap these functions; benchmarks call them directly.

Conventions shared with the rest of ``bioplastic``:

* A *synapse* is an entry of the weight of an :class:`torch.nn.Linear` or of a convolution
  (any :class:`torch.nn.modules.conv._ConvNd`). Dimension 1 of the weight indexes the
  *presynaptic* unit (input feature or input channel), dimension 0 the *postsynaptic* unit.
* A synapse is *present* iff its weight is non-zero.
* A Dale-typed module carries a buffer ``dale_sign`` of shape ``[weight.shape[1]]`` with entries
  ``+1`` (excitatory) or ``-1`` (inhibitory). Probes also work on modules without it.

Groups of functions:

* weights: :func:`synaptic_layers`, :func:`connectivity`, :func:`connectivity_per_layer`,
  :func:`dale_violations` (:func:`shared_dale_violations` for layers reading the same units),
  :func:`sign_flips`, :func:`log_magnitude_stats`, :func:`ei_totals`,
  :func:`weight_report` (:func:`layer_report` for one layer);
* activity (``acts`` is ``[n_samples, n_units]``): :func:`population_sparseness`,
  :func:`lifetime_sparseness`, :func:`silent_fraction`, :func:`participation_ratio`,
  :func:`ei_input_balance`, :func:`activity_distribution_stats`, :func:`record_activations`,
  :func:`record_activity`;
* task encoding: :func:`recruited_synapses`, :func:`task_selectivity`, :func:`recruited_units`,
  :func:`jaccard_matrix`, :func:`capacity`, :func:`allocation_matrix`.

Example::

    >>> import torch
    >>> from torch import nn
    >>> from bioplastic.probes import connectivity, population_sparseness
    >>> connectivity(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    0.5
    >>> population_sparseness(torch.eye(4))
    1.0
"""

from __future__ import annotations

from bioplastic.probes.activity import (
    activity_distribution_stats,
    ei_input_balance,
    lifetime_sparseness,
    participation_ratio,
    population_sparseness,
    record_activations,
    record_activity,
    silent_fraction,
)
from bioplastic.probes.tasks import (
    TaskSelectivity,
    allocation_matrix,
    capacity,
    jaccard_matrix,
    recruited_synapses,
    recruited_units,
    task_selectivity,
)
from bioplastic.probes.weights import (
    connectivity,
    connectivity_per_layer,
    dale_violations,
    ei_totals,
    layer_report,
    log_magnitude_stats,
    shared_dale_violations,
    sign_flips,
    synaptic_layers,
    weight_report,
)

__all__ = [
    "TaskSelectivity",
    "activity_distribution_stats",
    "allocation_matrix",
    "capacity",
    "connectivity",
    "connectivity_per_layer",
    "dale_violations",
    "ei_input_balance",
    "ei_totals",
    "jaccard_matrix",
    "layer_report",
    "lifetime_sparseness",
    "log_magnitude_stats",
    "participation_ratio",
    "population_sparseness",
    "record_activations",
    "record_activity",
    "recruited_synapses",
    "recruited_units",
    "shared_dale_violations",
    "sign_flips",
    "silent_fraction",
    "synaptic_layers",
    "task_selectivity",
    "weight_report",
]
