"""Helpers for data-parallel training with ``torchrun``: process group, sharding,
state checksums that prove the ranks agree, atomic checkpoints and SIGTERM handling.

The training loop that uses them (``bioplastic train``) is
:func:`bioplastic.experiments.train.train`; its docstring explains the design (identical
optimizer steps by seeding, rank 0 writes, checkpoints that load with ``weights_only=True``).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import signal
import warnings
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bioplastic._device import DEVICE_CHOICES, resolve_device
from bioplastic._io import write_atomic_with

__all__ = [
    "BACKENDS",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_NAME",
    "CHECKPOINT_VERSION",
    "DEVICES",
    "DistInfo",
    "TrainingInterrupted",
    "agree_to_stop",
    "all_sum",
    "check_ranks_agree",
    "gather",
    "init_distributed",
    "load_checkpoint",
    "resolve_device",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
    "shard",
    "shutdown",
    "sigterm_flag",
    "state_checksum",
    "verify_archive",
    "verify_rule_state",
]

logger = logging.getLogger(__name__)

DEVICES = DEVICE_CHOICES
BACKENDS = ("auto", "gloo", "nccl")
CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = "bioplastic-train-checkpoint"
CHECKPOINT_VERSION = 1
#: Configuration entries that must match for a checkpoint to be resumed.


# ------------------------------------------------------------------------------ process group
@dataclass(frozen=True)
class DistInfo:
    """Where this process stands: its rank, the number of ranks, its device and backend.

    ``backend`` is ``None`` for a single process (no process group).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the rank that logs and writes."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether a process group with more than one rank is running."""
        return self.backend is not None


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def init_distributed(
    device: str = "auto", backend: str = "auto", timeout_s: float = 300.0
) -> DistInfo:
    """Join the process group that ``torchrun`` set up, or describe a single process.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` it initialises
    the default process group. ``backend="auto"`` picks NCCL when the ranks train on CUDA and
    every rank of this machine has its own GPU, gloo otherwise (gloo also reduces CUDA
    tensors, so several ranks may share one GPU).

    Args:
        device: see :func:`resolve_device`.
        backend: ``"auto"``, ``"gloo"`` or ``"nccl"``.
        timeout_s: how long a collective waits for the other ranks before failing (a
            :class:`datetime.timedelta` of it is the process group's timeout; the default
            is ``bioplastic train --timeout``'s).

    Raises:
        ValueError: bad arguments, NCCL without CUDA, or inconsistent torchrun variables.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not (isinstance(timeout_s, (int, float)) and timeout_s > 0 and math.isfinite(timeout_s)):
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    world_size = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"inconsistent torchrun variables: RANK={rank}, WORLD_SIZE={world_size}")
    dev = resolve_device(device, local_rank)
    if world_size == 1:
        if backend == "nccl" and dev.type != "cuda":
            raise ValueError("backend nccl needs CUDA; use --device cuda or backend gloo")
        return DistInfo(0, 1, 0, dev, None)
    if backend == "auto":
        local_world = _env_int("LOCAL_WORLD_SIZE", world_size)
        own_gpu = dev.type == "cuda" and local_world <= torch.cuda.device_count()
        backend = "nccl" if own_gpu else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError("backend nccl needs CUDA; use --device cuda or backend gloo")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        kwargs: dict[str, Any] = {"timeout": timedelta(seconds=timeout_s)}
        if backend == "nccl":
            kwargs["device_id"] = dev
        dist.init_process_group(backend=backend, **kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank, dev, backend)


def shutdown(info: DistInfo) -> None:
    """Leave the process group (if :func:`init_distributed` joined one)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def shard(batch: Tensor, rank: int, world_size: int) -> Tensor:
    """This rank's contiguous part of a global batch (sizes differ by at most one).

    The first ``len(batch) % world_size`` ranks get one element more; a rank may get none
    when the batch is smaller than the world.
    """
    if not (isinstance(world_size, int) and world_size >= 1 and 0 <= rank < world_size):
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return batch.tensor_split(world_size)[rank]


# ------------------------------------------------------------------------------ checksums
def _canonical(value: Any) -> Any:
    """BioRule keys its generators by device (``cuda:0`` on rank 0, ``cuda:1`` on rank 1):
    hash them by device type so that ranks on different GPUs agree."""
    if isinstance(value, Mapping) and "bio" in value and isinstance(value["bio"], Mapping):
        bio = dict(value["bio"])
        rng = bio.get("rng", {})
        bio["rng"] = [rng[k] for k in sorted(rng, key=lambda k: (torch.device(k).type, k))]
        return {**value, "bio": bio}
    return value


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, Tensor):
        t = value.detach().to("cpu").contiguous()
        digest.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        if t.numel():
            digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"{type(value).__name__}:{value!r}".encode())


def state_checksum(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> str:
    """SHA-256 (hex) of a model's ``state_dict`` and, optionally, an optimizer's.

    Covers every tensor bit for bit (weights, Dale signs, BioRule's unit signs, plasticity,
    momentum, budgets, generator states) and every scalar; equal checksums mean identical
    state. Generator states are hashed by device type, not by device index.
    """
    digest = hashlib.sha256()
    _feed(digest, model.state_dict())
    if optimizer is not None:
        _feed(digest, _canonical(optimizer.state_dict()))
    return digest.hexdigest()


def gather(info: DistInfo, value: Any) -> list[Any]:
    if not info.distributed:
        return [value]
    values: list[Any] = [None] * info.world_size
    dist.all_gather_object(values, value)
    return values


def check_ranks_agree(info: DistInfo, checksum: str, when: str) -> list[str]:
    checksums = gather(info, checksum)
    if len(set(checksums)) > 1:
        raise RuntimeError(
            f"ranks diverged {when}: state checksums {[c[:12] for c in checksums]} "
            "(every rank must use the same torch.manual_seed before building the optimizer)"
        )
    return checksums


# ------------------------------------------------------------------------------ checkpoints
def save_checkpoint(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """``torch.save(payload)`` to ``path`` atomically (temporary file, fsync, rename).

    Readers see the previous file or the new one, never a partial one; if writing fails the
    temporary file is removed and the previous file is left as it was.
    """
    write_atomic_with(path, lambda handle: torch.save(dict(payload), handle))


def verify_archive(path: str | os.PathLike[str]) -> None:
    """Check that ``path`` is an intact ``torch.save`` archive, before anything unpickles it.

    ``torch.load`` does not check the archive's CRC-32 checksums: a file with flipped bytes
    loads, with NaN or sign-flipped weights. This reads every member and compares its CRC
    (``zipfile.ZipFile.testzip``).

    Raises:
        ValueError: one line naming the file: empty, truncated, not a torch archive, or
            corrupted (a member whose checksum does not match).
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index is at the end
        what = "an empty file" if path.stat().st_size == 0 else "truncated, or not a torch file"
        raise ValueError(f"{path}: not a readable checkpoint ({what})")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except Exception as err:  # a damaged header: BadZipFile, zlib.error, EOFError, ...
        raise ValueError(
            f"{path}: corrupted checkpoint ({type(err).__name__}); it was not loaded"
        ) from None
    if bad is not None:
        raise ValueError(
            f"{path}: corrupted checkpoint (checksum mismatch in {bad.split('/')[-1]}); "
            "it was not loaded"
        )


def verify_rule_state(path: str | os.PathLike[str], model: nn.Module, optimizer: Any) -> None:
    """Refuse a restored state that cannot be right: non-finite weights, or (for a
    :class:`bioplastic.BioRule`) present synapses whose sign disagrees with the presynaptic
    type the rule recorded (:meth:`BioRule.presynaptic_sign`).

    Raises:
        ValueError: one line naming ``path`` and the first bad parameter.
    """
    names = {id(p): name for name, p in model.named_parameters()}
    sign_of = getattr(optimizer, "presynaptic_sign", None)
    for group in getattr(optimizer, "param_groups", []):
        for p in group["params"]:
            name = names.get(id(p), "a parameter")
            if not bool(torch.isfinite(p).all()):
                raise ValueError(f"{path}: corrupted checkpoint: {name} holds NaN or infinity")
            sign = sign_of(p) if callable(sign_of) else None
            if sign is None or p.dim() < 2:
                continue
            shape = [1] * p.dim()
            shape[1] = -1
            wrong = int(((p * sign.reshape(shape).to(p.device)) < 0).sum())
            if wrong:
                raise ValueError(
                    f"{path}: corrupted checkpoint: {wrong} synapses of {name} have the sign "
                    "opposite to their presynaptic type"
                )


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` with ``torch.load(weights_only=True)``.

    Only tensors, plain containers, numbers and strings are read: a file planted to run code
    is refused, never executed (there is no option to load it anyway). The archive's
    checksums are verified first (:func:`verify_archive`). Tensors are loaded on the CPU.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: one line naming the file: truncated, corrupted, not a torch file, holding
            objects other than plain values, or a torch file of another kind.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a checkpoint file")
    verify_archive(path)
    try:
        with warnings.catch_warnings():  # foreign pickles make torch warn before it fails
            warnings.simplefilter("ignore")
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{path}: refused: it holds objects other than tensors and plain values "
            "(loading it could run code)"
        ) from None
    except Exception as err:  # a damaged archive
        lines = str(err).strip().splitlines()
        reason = lines[0].split(". ")[0] if lines else type(err).__name__
        raise ValueError(f"{path}: not a readable checkpoint ({reason[:160]})") from None
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a bioplastic train checkpoint")
    if data.get("version") != CHECKPOINT_VERSION:
        raise ValueError(
            f"{path}: checkpoint version {data.get('version')!r}, this reads {CHECKPOINT_VERSION}"
        )
    missing = [k for k in ("config", "epoch", "batch", "model", "optimizer") if k not in data]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return data


def rng_state(all_generators: bool = False) -> dict[str, Any]:
    """The global random generators' states: torch's (and CUDA's, once initialised); with
    ``all_generators`` also numpy's and Python's (Avalanche draws from those)."""
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if all_generators:
        import random

        import numpy as np

        state["numpy"] = np.random.get_state()
        state["python"] = random.getstate()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (CUDA only on a machine with as many GPUs)."""
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "python" in state:
        import random

        random.setstate(state["python"])


# ------------------------------------------------------------------------------ SIGTERM
class TrainingInterrupted(Exception):
    """SIGTERM stopped training after a step; a checkpoint was written at that position."""

    def __init__(self, checkpoint: Path, epoch: int, batch: int):
        super().__init__(
            f"stopped by SIGTERM in epoch {epoch + 1} after batch {batch}; checkpoint "
            f"written to {checkpoint} (rerun with --resume)"
        )
        self.checkpoint = checkpoint
        self.epoch = epoch
        self.batch = batch


@contextmanager
def sigterm_flag() -> Iterator[list[bool]]:
    """A one-element list that becomes ``[True]`` when SIGTERM arrives (main thread only)."""
    flag = [False]

    def handler(signum: int, frame: Any) -> None:
        flag[0] = True

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGTERM, previous)


def agree_to_stop(info: DistInfo, local: bool) -> bool:
    if not info.distributed:
        return local
    device = info.device if info.backend == "nccl" else torch.device("cpu")
    flag = torch.tensor([1 if local else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def all_sum(info: DistInfo, value: float) -> float:
    """``value`` summed over the ranks (in float64)."""
    if not info.distributed:
        return value
    device = info.device if info.backend == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())
