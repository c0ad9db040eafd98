"""Python scalars handed to tensor kernels: the same value on every device."""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: Largest finite float32: CPU kernels on float32 (and on half types, computed in float32) round
#: a Python scalar to float32, so a larger one is ``inf`` there.
_F32_MAX = torch.finfo(torch.float32).max


def kernel_scalar(x: float | Tensor, dtype: torch.dtype) -> float | Tensor:
    """``x`` as a kernel on ``dtype`` tensors computes with it: ``+-inf`` beyond float32's range
    unless ``dtype`` is float64. The CPU's kernels round such a scalar (a huge hyper-parameter
    such as ``prune_threshold=1e300``) themselves; CUDA's raise instead ("value cannot be
    converted to type float without overflow"), so the rule hands every device the rounded value.
    """
    if torch.is_tensor(x) or dtype == torch.float64 or not abs(x) > _F32_MAX:  # NaN, inf pass
        return x
    return math.copysign(math.inf, x)
