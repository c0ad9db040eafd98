"""``IntrinsicPlasticityPlugin``: each hidden unit adapts its own excitability (its bias).

Intrinsic plasticity (Triesch 2005, "A gradient rule for the plasticity of a neuron's intrinsic
excitability"; here in its simplest, threshold form) is a homeostasis of *activity*, not of
synapses: every hidden ReLU unit ``i`` keeps an exponential average ``rate_i`` of the fraction of
training samples on which it fires (output > 0) and moves its bias against the error,

    rate_i <- smoothing * rate_i + (1 - smoothing) * (fraction of the mini-batch with y_i > 0)
    b_i    <- b_i - eta * (rate_i - target)

after every training iteration (after the optimizer's step: the optimizer keeps updating the
biases from their gradients, the two updates add). A unit that fires on more than ``target`` of
the inputs raises its threshold, a silent one lowers it, so every unit ends up selective. The
plugin changes biases only: weights, their signs and Dale's-law types are never touched.

Units are found by module order: every activation module (``nn.ReLU``, ...) is paired with the
last Linear or Conv layer with a bias before it (for a convolution, a unit is a channel and its
firing fraction is taken over the batch and the positions). In a
:class:`strategies.avalanche.MultiHeadMLP` those are the trunk's hidden layers; the task heads,
followed by no activation, are left alone.

Example::

    from strategies.avalanche import make_strategy
    from strategies.avalanche.intrinsic import IntrinsicPlasticityPlugin

    strategy = make_strategy("bio", model, plugins=[IntrinsicPlasticityPlugin(target=0.2)])
"""

from __future__ import annotations

import math
from typing import Any

import torch
from avalanche.core import SupervisedPlugin
from torch import Tensor, nn

from strategies.avalanche.metrics._base import ACTIVATIONS

__all__ = ["IntrinsicPlasticityPlugin", "excitable_units"]

_SYNAPTIC = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
#: What survives a checkpoint (hooks and module references are rebuilt at the next experience).
_STATE = ("target", "rate", "smoothing", "firing")


def excitable_units(model: nn.Module) -> dict[str, nn.Module]:
    """``{activation module name: the layer whose bias sets its units' thresholds}``.

    Every activation module (:data:`strategies.avalanche.metrics._base.ACTIVATIONS`) is paired
    with the last Linear/Conv layer with a bias that comes before it in ``model.modules()``
    order; activations with no such layer since the previous activation are skipped.
    """
    pairs: dict[str, nn.Module] = {}
    last: nn.Module | None = None
    for name, module in model.named_modules():
        if isinstance(module, _SYNAPTIC) and module.bias is not None:
            last = module
        elif isinstance(module, ACTIVATIONS) and last is not None:
            pairs[name] = last
            last = None
    return pairs


def _check_fraction(name: str, value: Any, low_open: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not ((0 < value) if low_open else (0 <= value)) or not value < 1:
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}")
    return float(value)


class IntrinsicPlasticityPlugin(SupervisedPlugin):
    """Threshold intrinsic plasticity of every hidden unit (module docstring), for any strategy.

    Args:
        target: the firing fraction every unit is driven to, in (0, 1) (e.g. 0.1-0.3).
        rate: ``eta``, the bias step per iteration per unit of rate error (> 0).
        smoothing: of the exponential average of each unit's firing fraction, in [0, 1)
            (0: the current mini-batch only).

    Attributes:
        firing: ``{activation module name: [units] tensor}``, each unit's averaged firing
            fraction on the training data; reset when a strategy starts its first experience,
            kept across experiences (a unit's excitability carries over from task to task).
    """

    def __init__(self, target: float = 0.2, rate: float = 0.01, smoothing: float = 0.9):
        super().__init__()
        self.target = _check_fraction("target", target)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0:
            raise ValueError(f"rate must be a number > 0, got {rate!r}")
        if not math.isfinite(rate):
            raise ValueError(f"rate must be finite, got {rate!r}")
        self.rate = float(rate)
        self.smoothing = _check_fraction("smoothing", smoothing, low_open=False)
        self.firing: dict[str, Tensor] = {}
        self._layers: dict[str, nn.Module] = {}
        self._batch: dict[str, Tensor] = {}
        self._hooks: list[Any] = []

    def __getstate__(self) -> dict[str, Any]:
        """Only the settings and the firing averages: hooks and modules are transient."""
        return {k: self.__dict__[k] for k in _STATE}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["target"], state["rate"], state["smoothing"])
        self.firing = state["firing"]

    # ------------------------------------------------------------------ Avalanche callbacks

    def before_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        if getattr(strategy.clock, "train_exp_counter", 0) == 0:
            self.firing = {}  # a fresh strategy (the same plugin may serve several runs)
        self.attach(strategy.model)

    def after_training_iteration(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.step()

    def after_training_exp(self, strategy: Any, *args: Any, **kwargs: Any) -> None:
        self.detach()

    # ------------------------------------------------------------------ the mechanism

    def attach(self, model: nn.Module) -> None:
        """Hook the activation modules of ``model`` (done before each training experience)."""
        self.detach()
        self._layers = excitable_units(model)
        if not self._layers:
            raise ValueError(
                "IntrinsicPlasticityPlugin found no activation module after a layer with a bias"
            )
        modules = dict(model.named_modules())
        for name in self._layers:
            self._hooks.append(modules[name].register_forward_hook(self._recorder(name)))

    def detach(self) -> None:
        """Remove the hooks (done after each training experience)."""
        for handle in self._hooks:
            handle.remove()
        self._hooks = []
        self._batch = {}

    def _recorder(self, name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if module.training:
                active = (output.detach() > 0).float()
                dims = [d for d in range(active.dim()) if d != 1]
                self._batch[name] = active.mean(dim=dims) if dims else active

        return hook

    @torch.no_grad()
    def step(self) -> None:
        """Update the firing averages with the last mini-batch and move every unit's bias."""
        for name, fraction in self._batch.items():
            bias = self._layers[name].bias
            previous = self.firing.get(name)
            if previous is None or previous.shape != fraction.shape:
                rate = fraction.clone()  # first batch (or a layer that grew): no history
            else:
                rate = previous.to(fraction.device).mul_(self.smoothing)
                rate.add_(fraction, alpha=1.0 - self.smoothing)
            self.firing[name] = rate
            bias.sub_((rate - self.target).to(bias.dtype), alpha=self.rate)
        self._batch = {}
