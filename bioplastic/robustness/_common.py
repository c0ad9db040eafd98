"""Shared pieces of the robustness evaluation: checks, batching, the torchattacks bridge."""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

#: Attack names accepted by every function in this module.
ATTACKS: tuple[str, ...] = ("fgsm", "pgd", "pgd_l2")

#: Default step-size rule: ``alpha = ALPHA_FACTOR * eps / steps`` (Madry et al. 2018 use 2.5).
ALPHA_FACTOR = 2.5

Data = Any  # a DataLoader-like iterable of (x, y, ...) batches, or an (x, y) pair of tensors


# --------------------------------------------------------------------------- validation


def _check_attack(attack: str) -> str:
    if not isinstance(attack, str) or attack.lower() not in ATTACKS:
        allowed = ", ".join(repr(a) for a in ATTACKS)
        raise ValueError(f"attack must be one of {allowed}; got {attack!r}")
    return attack.lower()


def _check_input_range(input_range: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"input_range must be a pair (lo, hi) of numbers; got {input_range!r}"
        ) from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"input_range must satisfy lo < hi (both finite); got {(lo, hi)}")
    return lo, hi


def _import_torchattacks():
    try:
        import torchattacks
    except ImportError as err:
        raise ImportError(
            "bioplastic.robustness needs the torchattacks package for adversarial attacks: "
            "pip install torchattacks  (or pip install 'bioplastic[robustness]')"
        ) from err
    return torchattacks


# --------------------------------------------------------------------------- helpers


def _batches(data: Data, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(x, y)`` from an ``(x, y)`` pair of tensors/arrays or from a loader.

    Loaders may yield extra items per batch (Avalanche adds task labels); they are ignored.
    """
    if isinstance(data, (tuple, list)) and len(data) == 2 and not _looks_like_batches(data):
        x, y = (torch.as_tensor(v) for v in data)
        if len(x) != len(y):
            raise ValueError(f"inputs and labels differ in length: {len(x)} vs {len(y)}")
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]
        return
    for batch in data:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise ValueError("each batch must be a sequence (inputs, labels, ...)")
        yield torch.as_tensor(batch[0]), torch.as_tensor(batch[1])


def _looks_like_batches(pair: Sequence[Any]) -> bool:
    # A list of two (x, y) batches must not be mistaken for one (x, y) pair of tensors.
    return all(isinstance(item, (tuple, list)) for item in pair)


def _model_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Put every submodule in eval mode and restore each one's own mode afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


class _UnitRangeModel(nn.Module):
    """Presents ``model`` to torchattacks as a model of 4-D inputs in ``[0, 1]``.

    torchattacks' PGDL2 normalises with ``.view(N, 1, 1, 1)``, which broadcasts wrongly for flat
    ``(N, D)`` inputs, so every non-4-D input travels as ``(N, 1, 1, D)`` and is reshaped back.
    """

    def __init__(self, model: nn.Module, lo: float, hi: float, sample_shape: torch.Size):
        super().__init__()
        self.model = model
        self.lo, self.scale = lo, hi - lo
        self.sample_shape = tuple(sample_shape)

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        u = x if (self.lo, self.scale) == (0.0, 1.0) else (x - self.lo) / self.scale
        return u if u.dim() == 4 else u.reshape(len(u), 1, 1, -1)

    def from_unit(self, u: torch.Tensor) -> torch.Tensor:
        x = u.reshape(len(u), *self.sample_shape)
        return x if (self.lo, self.scale) == (0.0, 1.0) else self.lo + self.scale * x

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return self.model(self.from_unit(u))


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def _warn_if_out_of_range(x: torch.Tensor, lo: float, hi: float, warned: list[bool]) -> None:
    if warned[0] or x.numel() == 0:
        return
    tol = 1e-6 * (hi - lo)
    if x.min().item() < lo - tol or x.max().item() > hi + tol:
        warned[0] = True
        warnings.warn(
            f"inputs fall outside input_range={(lo, hi)}; attacks clip adversarial inputs to "
            "that range, so pass the range your model's inputs actually live in",
            stacklevel=3,
        )


def _build_attack(
    wrapped: _UnitRangeModel,
    attack: str,
    eps: float,
    steps: int,
    alpha: float,
    random_start: bool,
    device: torch.device,
):
    torchattacks = _import_torchattacks()
    # torchattacks prints (rather than warns) when the model has no parameters; keep stdout clean.
    with contextlib.redirect_stdout(io.StringIO()):
        if attack == "fgsm":
            atk = torchattacks.FGSM(wrapped, eps=eps)
        elif attack == "pgd":
            atk = torchattacks.PGD(
                wrapped, eps=eps, alpha=alpha, steps=steps, random_start=random_start
            )
        else:
            atk = torchattacks.PGDL2(
                wrapped, eps=eps, alpha=alpha, steps=steps, random_start=random_start
            )
    atk.set_device(device)
    return atk


def _resolve_alpha(alpha: float | None, eps: float, steps: int) -> float:
    if alpha is None:
        return ALPHA_FACTOR * eps / steps
    alpha = float(alpha)
    if not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0 (or None); got {alpha}")
    return alpha
