"""Small models for the offline streams: a single-head MLP and a multi-head MLP for task streams.

* :class:`MultiHeadMLP`: an MLP trunk (``trunk``) and Avalanche's ``MultiHeadClassifier``
  (``heads``): one head per task label, created by Avalanche's model adaptation when a new task
  appears. Under :class:`strategies.avalanche.BioPlastic` (or :class:`BioRulePlugin`) a new head
  is given Dale's-law types when it is added, and ``make_optimizer`` hands it to the rule.
* :class:`PackNetMultiHead`: the same model prepared for PackNet: the trunk's layers are
  wrapped for PackNet's per-task masks, the heads stay task-specific (Avalanche's
  ``PackNetModel`` would wrap the heads too, which breaks their adaptation).
* :func:`make_model`: the right model for a stream (multi-head for the ``"task"`` scenario).

Example::

    model = make_model(stream, hidden=(128,))
    strategy = BioPlastic(model, train_epochs=5)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from avalanche.models import MultiHeadClassifier, MultiTaskModule
from avalanche.models.packnet import PackNetModel
from torch import Tensor, nn

from bioplastic.dale import OnOffSplit, on_off_sign
from bioplastic.data import Stream
from bioplastic.probes import synaptic_layers

__all__ = ["MultiHeadMLP", "PackNetMultiHead", "head_groups", "make_model", "mlp_trunk"]


def _check_sizes(in_features: int, hidden: Sequence[int]) -> tuple[int, ...]:
    if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 1:
        raise ValueError(f"in_features must be a positive int, got {in_features!r}")
    hidden = tuple(hidden)
    if not hidden or any(isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty sequence of positive ints, got {hidden!r}")
    return hidden


def head_groups(model: nn.Module) -> list[list[tuple[str, nn.Module]]]:
    """The synaptic layers (name in ``model``, module) of each multi-head classifier
    (Avalanche's ``MultiHeadClassifier``) in ``model``: layers that read the same units."""
    groups = []
    for prefix, container in model.named_modules():
        if isinstance(container, MultiHeadClassifier):
            inside = f"{prefix}." if prefix else ""
            groups.append([(inside + name, m) for name, m in synaptic_layers(container)])
    return groups


def mlp_trunk(
    in_features: int, hidden: Sequence[int] = (256,), on_off: bool = False
) -> nn.Sequential:
    """``Flatten -> [OnOffSplit] -> (Linear -> ReLU) * len(hidden)``.

    With ``on_off`` the first layer sees every input feature twice, through an excitatory and an
    inhibitory presynaptic unit (its ``dale_sign`` buffer is set here, and ``dalify`` keeps it).
    """
    hidden = _check_sizes(in_features, hidden)
    layers: list[nn.Module] = [nn.Flatten()]
    n_in = in_features
    if on_off:
        layers.append(OnOffSplit())
        n_in = 2 * in_features
    for i, width in enumerate(hidden):
        linear = nn.Linear(n_in, width)
        if on_off and i == 0:
            linear.register_buffer("dale_sign", on_off_sign(in_features))
            linear.weight.dale_sign = linear.dale_sign
        layers += [linear, nn.ReLU()]
        n_in = width
    return nn.Sequential(*layers)


class MultiHeadMLP(MultiTaskModule):
    """An MLP trunk shared by all tasks and one linear head per task label.

    Args:
        in_features: number of input features (inputs are flattened).
        n_classes: outputs of each head (classes per task).
        hidden: widths of the hidden layers.
        on_off: feed the input through an excitatory and an inhibitory copy (see
            :func:`mlp_trunk`).

    ``forward(x, task_labels)`` returns ``[batch, n_classes]`` logits from each sample's head.
    """

    def __init__(
        self,
        in_features: int,
        n_classes: int,
        hidden: Sequence[int] = (256,),
        on_off: bool = False,
    ):
        super().__init__()
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 1:
            raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")
        self.trunk = mlp_trunk(in_features, hidden, on_off)
        self.heads = MultiHeadClassifier(tuple(hidden)[-1], initial_out_features=n_classes)

    def forward(self, x: Tensor, task_labels: Tensor | int | None) -> Tensor:
        return self.heads(self.trunk(x), task_labels)

    def forward_single_task(self, x: Tensor, task_label: int) -> Tensor:
        return self.heads.forward_single_task(self.trunk(x), task_label)


class PackNetMultiHead(PackNetModel):
    """PackNet over a shared trunk, with task-specific heads left unwrapped.

    PackNet's per-weight task ownership (``task_index`` buffers of the wrapped trunk layers)
    applies to the trunk; each task's head is only trained on its task anyway. Build it from a
    :class:`MultiHeadMLP` with :meth:`from_multi_head`.
    """

    def __init__(self, trunk: nn.Module, heads: MultiHeadClassifier):
        super().__init__(trunk)
        self.heads = heads

    @classmethod
    def from_multi_head(cls, model: MultiHeadMLP) -> PackNetMultiHead:
        """Wrap ``model``'s trunk for PackNet and keep its heads (shares their parameters)."""
        if not isinstance(model, MultiHeadMLP):
            raise TypeError(f"model must be a MultiHeadMLP, got {type(model).__name__}")
        return cls(model.trunk, model.heads)

    def forward(self, x: Tensor, task_labels: Tensor | int) -> Tensor:
        labels = torch.as_tensor(task_labels).reshape(-1)
        if not bool((labels == labels[0]).all()):
            raise ValueError("PackNet needs every sample of a mini-batch to come from one task")
        self.activate_task(min(int(labels[0]), self.task_count))
        return self.heads(self.wrappee(x), task_labels)


def make_model(
    stream: Stream,
    hidden: Sequence[int] = (256,),
    on_off: bool = False,
    multi_head: bool | None = None,
) -> nn.Module:
    """An MLP for ``stream``: multi-head in the ``"task"`` scenario, single-head otherwise.

    Args:
        stream: the offline stream, or any object with ``input_shape``, ``n_classes`` and
            ``scenario`` (e.g. the stream comparison's wrapper of Avalanche's own benchmarks).
        hidden: hidden-layer widths.
        on_off: excitatory and inhibitory copies of the input (for Dale's-law models).
        multi_head: force a multi-head (True) or single-head (False) model; default: multi-head
            iff ``stream.scenario == "task"``.

    Returns:
        :class:`MultiHeadMLP`, or ``nn.Sequential(trunk, nn.Linear(hidden[-1], n_classes))``.
    """
    if not all(hasattr(stream, a) for a in ("input_shape", "n_classes", "scenario")):
        raise TypeError(
            "stream must be a bioplastic.data.Stream (or have input_shape, n_classes and "
            f"scenario), got {type(stream).__name__}"
        )
    in_features = math.prod(stream.input_shape)
    if multi_head is None:
        multi_head = stream.scenario == "task"
    if multi_head:
        return MultiHeadMLP(in_features, stream.n_classes, hidden, on_off)
    trunk = mlp_trunk(in_features, hidden, on_off)
    return nn.Sequential(*trunk, nn.Linear(tuple(hidden)[-1], stream.n_classes))
