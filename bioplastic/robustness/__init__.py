"""Adversarial robustness evaluation, gradient-masking checks and matched-accuracy training.

The attacks themselves come from `torchattacks <https://github.com/Harry24k/adversarial-attacks-pytorch>`_
(``pip install torchattacks``), a maintained attack library; this module only drives it:

- :func:`evaluate_attack`: accuracy under FGSM, PGD (L-inf) or PGD (L2), with random restarts.
- :func:`robustness_curve`: clean and per-attack, per-epsilon accuracy (a JSON-ready dict).
- :func:`gradient_masking_checks`: sanity checks that robust accuracy is not an artefact of
  masked or obfuscated gradients (Athalye, Carlini & Wagner 2018, "Obfuscated gradients give a
  false sense of security"; Carlini et al. 2019, "On evaluating adversarial robustness").
- :func:`train_to_accuracy`: the matched-accuracy protocol. Robustness depends strongly on how
  well a model fits its data, so learning rules are compared at *equal clean accuracy*: train
  each model with any optimizer until its validation accuracy first reaches the same target,
  then compare their :func:`robustness_curve`. Report the accuracy actually reached (the target
  is usually overshot a little; ``eval_every_steps`` reduces the overshoot).

**Units of epsilon.** torchattacks assumes inputs in ``[0, 1]``. Every function here takes an
``input_range=(lo, hi)`` describing where the *model's* inputs live (default ``(0, 1)``, e.g.
scikit-learn digits divided by 16). The model is wrapped so that attacks run on the rescaled
input ``u = (x - lo) / (hi - lo)`` in ``[0, 1]``; ``eps`` and ``alpha`` are therefore fractions
of the input range (L-inf), or L2 norms in that rescaled space (``pgd_l2``). Adversarial inputs
are clipped to ``[lo, hi]``. Inputs of any shape work (flat feature vectors, images).

``bioplastic`` imports without torchattacks; it is only imported when an attack runs.

Example::

    >>> from bioplastic.robustness import robustness_curve
    >>> curve = robustness_curve(model, (x_test, y_test), epsilons=[0.0, 0.05, 0.1])
    >>> curve["accuracy"]["pgd"]            # one accuracy per epsilon
"""

from bioplastic.robustness._common import ALPHA_FACTOR, ATTACKS
from bioplastic.robustness.attacks import (
    accuracy,
    adversarial_examples,
    evaluate_attack,
    robustness_curve,
)
from bioplastic.robustness.masking import gradient_masking_checks
from bioplastic.robustness.training import TrainToAccuracyResult, train_to_accuracy

__all__ = [
    "ALPHA_FACTOR",
    "ATTACKS",
    "TrainToAccuracyResult",
    "accuracy",
    "adversarial_examples",
    "evaluate_attack",
    "gradient_masking_checks",
    "robustness_curve",
    "train_to_accuracy",
]
