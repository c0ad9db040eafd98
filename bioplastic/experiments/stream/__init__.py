"""Continual-learning strategies side by side on one offline stream, with resume.

The package: :mod:`.run` checks the arguments and loops over seeds and strategies,
:mod:`.one_run` trains one strategy on one seed (checkpoints, resume, manifest),
:mod:`.metrics` computes a run's metrics, :mod:`.summary` aggregates them over seeds and
checks the targets, :mod:`.markdown` renders the tables.

:func:`run_stream_comparison` trains every strategy of :func:`strategies.avalanche.make_strategy`
asked for on the same stream and seeds: for each seed ``k`` it builds the stream
(:func:`bioplastic.data.make_stream` with ``seed=k``, so seeds vary the class order and the
train/test split), and for each strategy a fresh model (:func:`make_model`, seeded with ``k``),
the strategy (hyper-parameters from :mod:`strategies.avalanche.config`) and an evaluator with the
probes (:func:`make_evaluator`) writing TensorBoard logs and one JSON file per run. After each
training experience the strategy is evaluated on *every* test experience, which fills the
accuracy matrix ``R[i][j]`` (accuracy on experience ``j`` after training experience ``i``; the
entries ``j > i`` are the accuracy on tasks not yet seen), a checkpoint is saved
(:func:`save_checkpoint`, atomic) and a progress manifest is updated.

Layout under ``logdir``::

    <stream>-<scenario>/
        manifest.json           settings of the comparison and the state of every run
        results.json            everything below, aggregated (mean ± std over seeds)
        results.md              the tables (format_markdown)
        <strategy>/seed<k>/     TensorBoard events, metrics.json (every metric per experience,
                                :class:`JSONResultsLogger`), run.json (the run's summary) and,
                                until the run is finished, checkpoint.pt

With ``resume=True`` a run whose ``run.json`` exists (same settings and hyper-parameters) is
not trained again, and a run interrupted between experiences continues from its last
checkpoint; the checkpoint restores model, optimizer, plugins, metrics, loggers and random
generators, so a resumed run ends with the same metrics as an uninterrupted one.

Metrics of one run, from its accuracy matrix ``R`` over ``T`` experiences:

* final average accuracy ``ACC = 1/T sum_j R[T-1][j]`` (Lopez-Paz & Ranzato 2017, "Gradient
  Episodic Memory for Continual Learning"); every task weighs the same, where Avalanche's
  ``Top1_Acc_Stream`` weights tasks by their test samples;
* Avalanche's forgetting ``avalanche_forgetting``: its ``StreamForgetting`` after the last
  experience, the accuracy right after training on a task minus the final one, averaged over
  the tasks before the last; on the matrix ``1/(T-1) sum_{j<T-1} (R[j][j] - R[T-1][j])``.
  Read from the metric (``metrics.json``), not recomputed;
* backward transfer ``BWT``: Avalanche's ``StreamBWT`` (Lopez-Paz & Ranzato 2017), negative
  when learning later tasks hurts earlier ones; it equals ``-avalanche_forgetting``;
* the max-based forgetting ``forgetting_max``, "F (max)" in the tables:
  ``1/(T-1) sum_{j<T-1} max_{j<=l<T-1} (R[l][j] - R[T-1][j])`` (Chaudhry et al. 2018,
  "Riemannian Walk for Incremental Learning"; the maximum runs over the accuracies the task
  had once trained), never below Avalanche's. Results written before it had this name store it
  as ``average_forgetting`` and are still read;
* the final connectivity (fraction of present synapses) and Dale violations of the whole model
  (:mod:`bioplastic.probes`). Backprop baselines are not Dale-typed: their violations are what
  the probe finds (units with mixed-sign outgoing weights) and ``dale_typed`` says so;
* per experience, the task-encoding probes (capacity used and free, mean synapse and unit
  overlap between tasks, synapses and units the task recruited).

Example::

    results = run_stream_comparison("split-digits", "task", strategies=("bio", "naive"),
                                    seeds=2, logdir="runs/")
    print(format_markdown(results))
"""

from bioplastic.experiments.stream.markdown import format_markdown
from bioplastic.experiments.stream.metrics import (
    ENCODING_KEYS,
    avalanche_metrics,
    continual_metrics,
    forgetting_max,
)
from bioplastic.experiments.stream.run import DEFAULT_STRATEGIES, QUICK, run_stream_comparison
from bioplastic.experiments.stream.summary import TARGETS, check_targets

__all__ = [
    "DEFAULT_STRATEGIES",
    "ENCODING_KEYS",
    "QUICK",
    "TARGETS",
    "avalanche_metrics",
    "check_targets",
    "continual_metrics",
    "forgetting_max",
    "format_markdown",
    "run_stream_comparison",
]
