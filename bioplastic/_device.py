"""Device names to ``torch.device``: one resolver for the library, the strategies and the CLI."""

from __future__ import annotations

import torch

__all__ = ["DEVICE_CHOICES", "resolve_device"]

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(device: str | torch.device | None = "auto", local_rank: int = 0) -> torch.device:
    """The device to run on.

    Args:
        device: ``"auto"`` or ``None`` (CUDA when available, else the CPU), ``"cpu"``,
            ``"cuda"`` (the GPU ``local_rank`` modulo the number of GPUs), or an explicit
            ``torch.device``/string such as ``"cuda:1"``.
        local_rank: this process's rank on its machine (``LOCAL_RANK`` under torchrun).

    Raises:
        ValueError: an unknown device, or CUDA asked for where there is none (one line).
    """
    if device is None:
        device = "auto"
    if isinstance(device, torch.device):
        text = str(device)
    elif isinstance(device, str):
        text = device.strip().lower()
    else:
        raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {text}: CUDA is not available on this machine "
                "(no CUDA device is available; use cpu)"
            )
        if text == "cuda":
            count = torch.cuda.device_count()
            return torch.device("cuda", local_rank % count) if count else torch.device("cuda")
        index_text = text.split(":", 1)[1]
        if not index_text.isdigit():
            raise ValueError(f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}")
        index = int(index_text)
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    try:  # other backends torch knows (mps, xpu, ...): let torch parse the name
        return torch.device(text)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"device must be one of {', '.join(DEVICE_CHOICES)}, got {device!r}"
        ) from None
