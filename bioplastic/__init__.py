"""bioplastic: a sign-preserving, structurally plastic learning rule for deep networks.

Core library: the rule (:class:`BioRule`), Dale's-law initialisation and layers, probes,
offline data, robustness evaluation and the command line. It never imports Avalanche or
learn2learn; their integrations live in the ``strategies`` package.
"""

from bioplastic import representation  # noqa: E402,F401  (bp.representation after import)
from bioplastic.baselines import OPTIMIZER_NAMES, EnforcedAdam, make_optimizer
from bioplastic.dale import (
    BioConvNet,
    BioMLP,
    DaleConv2d,
    DaleLinear,
    OnOffSplit,
    dale_init_,
    dalify,
    on_off_sign,
)
from bioplastic.functional import multiplicative_update
from bioplastic.inhibition import ConvInterneurons, InhibitedConv2d, InhibitedLinear, Interneurons
from bioplastic.optim import BioRule
from bioplastic.probes import synaptic_layers

__version__ = "0.1.0.dev0"

__all__ = [
    "OPTIMIZER_NAMES",
    "BioConvNet",
    "BioMLP",
    "BioRule",
    "DaleConv2d",
    "DaleLinear",
    "ConvInterneurons",
    "EnforcedAdam",
    "InhibitedConv2d",
    "InhibitedLinear",
    "Interneurons",
    "OnOffSplit",
    "dale_init_",
    "dalify",
    "on_off_sign",
    "make_optimizer",
    "multiplicative_update",
    "synaptic_layers",
]
