"""The robustness experiment: learning rules at matched clean accuracy, attacked and analysed.

:func:`run_robustness` trains the same Dale-initialised :class:`~bioplastic.dale.BioMLP` (ON/OFF
input split, and bio's interneurons: the interventions move weights between the trained models,
so every rule trains one network; one initialisation per seed, shared by every rule, and one
batch order per seed)
with each learning rule until its *validation* accuracy first reaches a common target
(:func:`bioplastic.robustness.train_to_accuracy`, checked every ``eval_every_steps`` steps).
This is the matched-accuracy protocol: robustness depends strongly on how well a model fits,
so rules are compared at equal clean accuracy, and the clean *test* accuracy actually reached is
reported next to every robust number. Each model is then attacked on the test set with FGSM,
PGD (L-inf) and PGD (L2) over an epsilon grid (torchattacks, via
:mod:`bioplastic.robustness`), checked for gradient masking, and probed
(:mod:`bioplastic.representation`): connectivity, weight scale, a Lipschitz proxy, input
gradients, linearised distance to the decision boundary, activity statistics, receptive fields.

**Is a robustness difference explained by connectivity or by weight scale?** Two checks
(:func:`analyse`):

(a) *Correlation across runs*: Spearman correlation of the mean PGD accuracy (over eps > 0) with
    connectivity, with the log Lipschitz bound (product of layer spectral norms), with the mean
    L1 norm of the loss gradient with respect to the input, and with the linearised L-inf radius
    (logit margin / L1 norm of its input gradient, a scale-free first-order robustness radius).
(b) *Interventions*, per seed: ``adam_pruned_to_bio``: the adam model magnitude-pruned, layer by
    layer, to the bio model's connectivity, without retraining; ``adam_pruned_finetuned``: the
    same, then fine-tuned with Adam under the pruning mask until validation accuracy is back at
    the target (at most ``finetune_epochs``); ``bio_rescaled_to_adam``: every bio layer
    rescaled to the Frobenius norm of the matching adam layer, with the biases compensated so
    that the logits are only multiplied by a positive constant (a ReLU network's decisions, and
    therefore its clean and robust accuracy under an exact attack, do not change: any change
    measured is the attack's sensitivity to logit scale). Each is attacked like the originals.

Example::

    >>> from bioplastic.experiments.robustness import run_robustness, format_markdown
    >>> results = run_robustness("digits", rules=("bio", "adam"), seeds=3)
    >>> print(format_markdown(results))

The package, one responsibility per module: :mod:`.data` (datasets, defaults, batch order),
:mod:`.attack` (APGD-DLR and its ensemble with PGD), :mod:`.measure` (curves and probes of one
model), :mod:`.interventions` (pruning and rescaling), :mod:`.run` (the experiment),
:mod:`.analysis` (summary and findings), :mod:`.markdown` and :mod:`.figures` (output).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bioplastic.experiments._common import jsonable, write_json
from bioplastic.experiments.robustness.analysis import (
    PREDICTORS,
    analyse,
    reference_attack,
    summarise,
)
from bioplastic.experiments.robustness.attack import (
    DLR_ATTACK,
    ENSEMBLE_ATTACK,
    apgd_dlr_accuracy,
)
from bioplastic.experiments.robustness.data import (
    DATASET_DEFAULTS,
    DATASETS,
    INTERVENTIONS,
    SCHEMA,
    load_robustness_data,
)
from bioplastic.experiments.robustness.figures import (
    plot_robustness_analysis,
    plot_robustness_curves,
    receptive_field_grids,
)
from bioplastic.experiments.robustness.interventions import magnitude_prune_, rescale_layers_
from bioplastic.experiments.robustness.markdown import format_markdown
from bioplastic.experiments.robustness.run import run_robustness

__all__ = [
    "DATASETS",
    "DATASET_DEFAULTS",
    "INTERVENTIONS",
    "SCHEMA",
    "DLR_ATTACK",
    "ENSEMBLE_ATTACK",
    "analyse",
    "apgd_dlr_accuracy",
    "format_markdown",
    "load_robustness_data",
    "magnitude_prune_",
    "plot_robustness_analysis",
    "PREDICTORS",
    "plot_robustness_curves",
    "receptive_field_grids",
    "reference_attack",
    "rescale_layers_",
    "run_robustness",
    "summarise",
    "write_results",
]


def write_results(
    results: Mapping[str, Any], folder: str | Path, *, figures: bool = True
) -> dict[str, Path]:
    """Write ``robustness_<dataset>.json`` and ``.md`` to ``folder`` and, with ``figures``,
    ``figures/robustness_<dataset>.png`` (curves), ``figures/robustness_analysis_<dataset>.png``
    (when interventions ran) and ``figures/receptive_fields_<dataset>.png``. Files are written
    atomically. Returns ``{kind: path}``.
    """
    from bioplastic._io import write_atomic
    from bioplastic.representation import plot_receptive_fields

    folder = Path(folder)
    dataset = results["config"]["dataset"]
    paths = {
        "json": folder / f"robustness_{dataset}.json",
        "md": folder / f"robustness_{dataset}.md",
    }
    write_json(paths["json"], jsonable(results))
    write_atomic(paths["md"], format_markdown(results))
    if figures:
        fig_dir = folder / "figures"
        paths["curves"] = plot_robustness_curves(results, fig_dir / f"robustness_{dataset}.png")
        if results.get("interventions"):
            paths["analysis"] = plot_robustness_analysis(
                results, fig_dir / f"robustness_analysis_{dataset}.png"
            )
        grids = receptive_field_grids(results)
        if grids:
            one_d = len(next(iter(results["receptive_fields"].values()))["image_shape"]) == 1
            paths["receptive_fields"] = plot_receptive_fields(
                grids,
                fig_dir / f"receptive_fields_{dataset}.png",
                title=f"{dataset}: first-layer effective filters (E-copy minus I-copy), strongest "
                "units per rule",
                xlabel="input position (sample index)" if one_d else "pixel column",
                ylabel="unit (one filter per row)" if one_d else "pixel row",
            )
    return paths
