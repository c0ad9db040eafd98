"""Data-parallel training of a Dale MLP with any rule, and checkpoints that survive a kill.

:func:`train` is the loop behind ``bioplastic train``. Run as a plain process it trains on one
device; started by ``torchrun --nproc_per_node N`` it wraps the model in PyTorch's
``DistributedDataParallel`` (gloo on CPU, NCCL when every rank has its own GPU):

* **Data.** Every rank loads the whole (small) dataset and draws the same permutation per
  epoch from a generator seeded with ``(seed, epoch)``; each global batch of ``batch_size``
  examples is cut into ``N`` contiguous, near-equal shards, one per rank. Each rank's loss is
  ``sum of its cross-entropies * N / global batch size``, so DDP's gradient average is the
  gradient of the global batch mean, exactly the single-process gradient up to float rounding,
  even for a last batch that does not divide evenly.
* **Identical optimizer steps: we seed, not broadcast.** DDP averages gradients with an
  all-reduce, so every rank holds the same gradient; every rank also calls
  ``torch.manual_seed(seed)`` before building the model and the optimizer, so the model
  starts identical (DDP's initial broadcast from rank 0 is then a no-op) and
  :class:`bioplastic.BioRule`, built with ``seed=None``, draws the same generator seed from
  torch's global generator on every rank. Its noise and growth then take the same random
  numbers everywhere, and the step, a deterministic function of (weights, state, gradient,
  generator), is the same on every rank: weights, signs, masks, plasticity and momentum stay
  bit-identical without any communication beyond DDP's gradient all-reduce. Code that builds
  a ``BioRule(seed=None)`` itself must give every rank the same ``torch.manual_seed``. This is
  verified, not assumed: at the start and after every epoch the ranks compare a SHA-256
  checksum of their model and optimizer state (:func:`state_checksum`) and stop with an error
  if they differ.
* **Rank 0** evaluates, logs, reports progress and writes files; the other ranks only train.
* **Checkpoints.** After every epoch rank 0 writes ``checkpoint.pt`` in the output folder
  (``torch.save`` to a temporary file, ``fsync``, then an atomic rename, so a crash while
  writing never leaves a corrupt file in its place). It holds the model's and optimizer's
  state dicts, the position in training, the metrics so far and the random generator states,
  all of them tensors and plain Python values: it loads with
  ``torch.load(path, weights_only=True)``, which never runs code from the file.
  ``resume=True`` continues from it and ends with the same weights as an uninterrupted run.
* **SIGTERM** (e.g. a scheduler's preemption, or ``torchrun`` forwarding one) sets a flag;
  the ranks agree on it after every step (a one-element all-reduce), finish the step, write a
  checkpoint at that position and raise :class:`TrainingInterrupted` (``bioplastic train``
  exits with status 143). A SIGKILL loses at most the epoch in progress.

Example::

    info = init_distributed("auto")          # reads torchrun's RANK/WORLD_SIZE, if any
    try:
        result = train(TrainConfig(rule="bio", epochs=5, out=Path("runs/train")), info)
    finally:
        shutdown(info)
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import pickle
import signal
import tempfile
import time
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from bioplastic.dale import BioMLP
from bioplastic.optim import OPTIMIZER_NAMES, BioRule, make_optimizer
from bioplastic.probes import dale_violations, synaptic_layers
from bioplastic.train import accuracy

__all__ = [
    "BACKENDS",
    "CHECKPOINT_NAME",
    "DATASETS",
    "DEVICES",
    "DistInfo",
    "TrainConfig",
    "TrainingInterrupted",
    "init_distributed",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
    "shard",
    "shutdown",
    "state_checksum",
    "train",
]

logger = logging.getLogger(__name__)

DATASETS = ("digits", "mnist1d")
DEVICES = ("auto", "cpu", "cuda")
BACKENDS = ("auto", "gloo", "nccl")
CHECKPOINT_NAME = "checkpoint.pt"
_FORMAT = "bioplastic-train-checkpoint"
_VERSION = 1
#: Configuration entries that must match for a checkpoint to be resumed.
_RESUME_KEYS = (
    "dataset", "rule", "rule_options", "hidden", "batch_size", "seed", "consolidate",
    "consolidate_factor",
)  # fmt: skip


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


def resolve_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """The device a rank trains on.

    Args:
        device: ``"auto"`` (CUDA when available, else the CPU), ``"cpu"``, ``"cuda"`` (the GPU
            ``local_rank`` modulo the number of GPUs) or an explicit ``torch.device``/string
            such as ``"cuda:1"``.
        local_rank: this process's rank on its machine (``LOCAL_RANK`` under torchrun).

    Raises:
        ValueError: an unknown device, or CUDA asked for where there is none.
    """
    if isinstance(device, torch.device):
        text = str(device)
    elif isinstance(device, str):
        text = device.strip().lower()
    else:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ValueError("device cuda: CUDA is not available on this machine (use cpu)")
        if text == "cuda":
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        try:
            index = int(text.split(":", 1)[1])
        except ValueError:
            raise ValueError(
                f"device must be one of {', '.join(DEVICES)}, got {device!r}"
            ) from None
        if not 0 <= index < torch.cuda.device_count():
            raise ValueError(
                f"device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {text!r}") from None


def init_distributed(
    device: str = "auto", backend: str = "auto", timeout_s: float = 600.0
) -> DistInfo:
    """Join the process group that ``torchrun`` set up, or describe a single process.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; with ``WORLD_SIZE > 1`` it initialises
    the default process group. ``backend="auto"`` picks NCCL when the ranks train on CUDA and
    every rank of this machine has its own GPU, gloo otherwise (gloo also reduces CUDA
    tensors, so several ranks may share one GPU).

    Args:
        device: see :func:`resolve_device`.
        backend: ``"auto"``, ``"gloo"`` or ``"nccl"``.
        timeout_s: how long a collective waits for the other ranks before failing.

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


def _gather(info: DistInfo, value: Any) -> list[Any]:
    if not info.distributed:
        return [value]
    values: list[Any] = [None] * info.world_size
    dist.all_gather_object(values, value)
    return values


def _check_ranks_agree(info: DistInfo, checksum: str, when: str) -> list[str]:
    checksums = _gather(info, checksum)
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
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(dict(payload), handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`train` with ``torch.load(weights_only=True)``.

    Tensors are loaded on the CPU. Raises ``FileNotFoundError`` if ``path`` does not exist and
    a one-line ``ValueError`` naming the file if it is truncated, corrupted, not a torch file,
    or a torch file of another kind.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise ValueError(f"{path}: a folder, not a checkpoint file")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index is at the end
        what = "an empty file" if path.stat().st_size == 0 else "truncated, or not a torch file"
        raise ValueError(f"{path}: not a readable checkpoint ({what})")
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
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError(f"{path}: not a bioplastic train checkpoint")
    if data.get("version") != _VERSION:
        raise ValueError(
            f"{path}: checkpoint version {data.get('version')!r}, this reads {_VERSION}"
        )
    missing = [k for k in ("config", "epoch", "batch", "model", "optimizer") if k not in data]
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {', '.join(missing)}")
    return data


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


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
def _sigterm_flag() -> Iterator[list[bool]]:
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


def _agree_to_stop(info: DistInfo, local: bool) -> bool:
    if not info.distributed:
        return local
    device = info.device if info.backend == "nccl" else torch.device("cpu")
    flag = torch.tensor([1 if local else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


# ------------------------------------------------------------------------------ training
@dataclass
class TrainConfig:
    """What :func:`train` trains and where it writes.

    Attributes:
        dataset: ``"digits"`` (scikit-learn's bundled 8x8 digits, 64 inputs) or ``"mnist1d"``
            (generated locally, 40 inputs; needs the ``mnist1d`` package).
        rule: a name of :data:`bioplastic.OPTIMIZER_NAMES` (``bio``, ``eg``, ``sgd``, ``adam``,
            ``enforced``).
        rule_options: keyword arguments for the rule (override its defaults).
        hidden: widths of the hidden layers of the :class:`bioplastic.BioMLP`.
        epochs: total number of epochs (a resumed run trains the remaining ones).
        batch_size: the *global* batch size, split over the ranks.
        seed: seeds the model, the rule's generator and the data order.
        consolidate: fraction in [0, 1] of present synapses consolidated after every epoch
            (``BioRule.consolidate``; bio and eg only; 0 disables).
        consolidate_factor: plasticity factor in (0, 1] of a consolidation.
        out: output folder (checkpoint, per-rank states).
        resume: continue from ``out/checkpoint.pt`` if it exists.
        save_rank_states: every rank also writes its final model and optimizer state to
            ``out/rank-<r>.pt`` (to compare ranks).
    """

    dataset: str = "digits"
    rule: str = "bio"
    rule_options: dict[str, Any] = field(default_factory=dict)
    hidden: tuple[int, ...] = (64,)
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    consolidate: float = 0.0
    consolidate_factor: float = 0.5
    out: Path = Path("runs/train")
    resume: bool = False
    save_rank_states: bool = False

    def validate(self) -> None:
        """Raise a ``ValueError`` naming the first bad field and its allowed values."""
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}")
        if self.rule not in OPTIMIZER_NAMES:
            raise ValueError(f"rule must be one of {', '.join(OPTIMIZER_NAMES)}, got {self.rule!r}")
        if not isinstance(self.rule_options, dict) or not all(
            isinstance(k, str) and k.isidentifier() for k in self.rule_options
        ):
            raise ValueError(
                f"rule_options must map option names to values, got {self.rule_options!r}"
            )
        hidden = tuple(self.hidden)
        if not hidden or not all(
            isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden
        ):
            raise ValueError(f"hidden must be one or more positive ints, got {self.hidden!r}")
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")
        c = self.consolidate
        if not (isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1):
            raise ValueError(f"consolidate must be a fraction in [0, 1], got {c!r}")
        if c and self.rule not in ("bio", "eg"):
            raise ValueError(f"consolidate applies to the rules bio and eg, not {self.rule!r}")
        f = self.consolidate_factor
        if not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f <= 1):
            raise ValueError(f"consolidate_factor must be in (0, 1], got {f!r}")

    def fingerprint(self) -> dict[str, Any]:
        """The entries a checkpoint must match to be resumed, as plain Python values."""
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        return {k: data[k] for k in _RESUME_KEYS}


def _load_data(dataset: str, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from bioplastic.data.sources import load_digits_arrays, load_mnist1d_arrays

    if dataset == "digits":
        arrays = load_digits_arrays(seed=0)
    else:
        arrays = load_mnist1d_arrays()
    x_train, y_train, x_test, y_test = (torch.as_tensor(a).to(device) for a in arrays)
    return x_train, y_train, x_test, y_test


def _build_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    try:
        return make_optimizer(config.rule, params, **config.rule_options)
    except TypeError as err:  # an option the rule does not take
        raise ValueError(f"rule {config.rule!r} does not take these options ({err})") from None


def _epoch_order(n: int, seed: int, epoch: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def _weight_summary(model: nn.Module) -> dict[str, Any]:
    layers = synaptic_layers(model)
    present = sum(int((m.weight != 0).sum()) for _, m in layers)
    total = sum(m.weight.numel() for _, m in layers)
    return {
        "connectivity": present / total if total else float("nan"),
        "dale_violations": sum(dale_violations(m) for _, m in layers),
    }


def _resume_state(config: TrainConfig, info: DistInfo) -> dict[str, Any] | None:
    path = config.out / CHECKPOINT_NAME
    if not (config.resume and path.exists()):
        return None
    data = load_checkpoint(path)
    saved = data["config"]
    wanted = config.fingerprint()
    differ = [k for k in _RESUME_KEYS if saved.get(k) != wanted[k]]
    if differ:
        detail = ", ".join(f"{k} {saved.get(k)!r} (now {wanted[k]!r})" for k in differ)
        raise ValueError(f"{path}: checkpoint of another configuration: {detail}")
    if data["epoch"] > config.epochs:
        raise ValueError(
            f"{path}: checkpoint has {data['epoch']} epochs done, more than epochs={config.epochs}"
        )
    return data


def train(
    config: TrainConfig,
    info: DistInfo | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a Dale MLP with ``config.rule`` on ``config.dataset`` (data parallel over ranks).

    See the module docstring for how data, randomness and checkpoints work. Call it on every
    rank; only rank 0 calls ``progress`` (one line per epoch) and writes the checkpoint.

    Returns:
        (on every rank) the final metrics: ``test_accuracy``, ``train_loss``, per-epoch
        ``history``, ``connectivity``, ``dale_violations``, ``nonfinite_skips``, the state
        ``checksum`` and every rank's ``rank_checksums``, and where training resumed from.

    Raises:
        ValueError: a bad configuration or an unreadable/mismatched checkpoint.
        TrainingInterrupted: SIGTERM arrived; a checkpoint was written.
        RuntimeError: the ranks' states diverged.
    """
    info = info or DistInfo()
    config.validate()
    start_time = time.perf_counter()
    resume = _resume_state(config, info)
    x_train, y_train, x_test, y_test = _load_data(config.dataset, info.device)
    n_classes = int(max(int(y_train.max()), int(y_test.max()))) + 1

    # We seed, not broadcast: the same seed on every rank gives the same model and the same
    # BioRule generator seed (BioRule(seed=None) draws it from torch's global generator).
    torch.manual_seed(config.seed)
    model = BioMLP(x_train.shape[1], tuple(config.hidden), n_classes, seed=config.seed)
    model.to(info.device)
    optimizer = _build_optimizer(config, model.parameters())

    epoch, batch, loss_sum, history = 0, 0, 0.0, []
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        _set_rng_state(resume["rng"])
        epoch, batch = int(resume["epoch"]), int(resume["batch"])
        # the loss summed over all ranks so far in this epoch; counted once, on rank 0
        loss_sum = float(resume.get("loss_sum", 0.0)) if info.is_main else 0.0
        history = list(resume.get("history", []))
        if info.is_main:
            logger.info("resuming %s at epoch %d, batch %d", config.out, epoch + 1, batch)
    resumed_from = None if resume is None else {"epoch": epoch, "batch": batch}

    # Before DDP's constructor broadcasts rank 0's weights: this checks the seeding itself.
    _check_ranks_agree(info, state_checksum(model, optimizer), "at the start")
    if progress is not None and info.is_main:
        where = "single process" if info.backend is None else f"{info.backend}"
        start = "" if resume is None else f", resuming at epoch {epoch + 1} batch {batch}"
        progress(
            f"training {config.rule} on {config.dataset}: {info.world_size} rank(s) ({where}, "
            f"{info.device}){start}"
        )
    net: nn.Module = model
    if info.distributed:
        device_ids = [info.device] if info.device.type == "cuda" else None
        # dale_sign buffers never change: no need to broadcast them before every forward
        net = DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)

    ckpt_path = config.out / CHECKPOINT_NAME
    n = len(x_train)
    batches_per_epoch = math.ceil(n / config.batch_size)

    def checkpoint(at_epoch: int, at_batch: int, partial_loss: float) -> None:
        if info.is_main:
            save_checkpoint(ckpt_path, {
                "format": _FORMAT,
                "version": _VERSION,
                "config": config.fingerprint(),
                "epoch": at_epoch,
                "batch": at_batch,
                "loss_sum": partial_loss,
                "history": history,
                "world_size": info.world_size,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": _rng_state(),
            })  # fmt: skip

    net.train()
    with _sigterm_flag() as sigterm:
        while epoch < config.epochs:
            order = _epoch_order(n, config.seed, epoch).to(info.device)
            while batch < batches_per_epoch:
                idx = shard(
                    order[batch * config.batch_size : (batch + 1) * config.batch_size],
                    info.rank,
                    info.world_size,
                )
                n_global = min(config.batch_size, n - batch * config.batch_size)
                optimizer.zero_grad(set_to_none=True)
                losses = nn.functional.cross_entropy(
                    net(x_train[idx]), y_train[idx], reduction="none"
                )
                (losses.sum() * (info.world_size / n_global)).backward()
                optimizer.step()
                loss_sum += float(losses.detach().sum())
                batch += 1
                if _agree_to_stop(info, sigterm[0]):
                    total = _all_sum(info, loss_sum)
                    checkpoint(epoch, batch, total)
                    if info.distributed:
                        dist.barrier()
                    raise TrainingInterrupted(ckpt_path, epoch, batch)
            epoch_loss = _all_sum(info, loss_sum) / n
            if config.consolidate and isinstance(optimizer, BioRule):
                optimizer.consolidate(config.consolidate, config.consolidate_factor)
            checksum = _check_ranks_agree(
                info, state_checksum(model, optimizer), f"after epoch {epoch + 1}"
            )[0]
            record = {"epoch": epoch + 1, "train_loss": epoch_loss}
            if info.is_main:
                record["test_accuracy"] = accuracy(model, x_test, y_test)
                record["checksum"] = checksum
            history.append(record)
            epoch, batch, loss_sum = epoch + 1, 0, 0.0
            checkpoint(epoch, 0, 0.0)
            if progress is not None and info.is_main:
                progress(
                    f"epoch {epoch}/{config.epochs}: loss {epoch_loss:.4f} "
                    f"test acc {record['test_accuracy']:.4f}"
                )

    checksums = _check_ranks_agree(info, state_checksum(model, optimizer), "at the end")
    if config.save_rank_states:
        save_checkpoint(
            config.out / f"rank-{info.rank}.pt",
            {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
        )
    if info.distributed:
        dist.barrier()  # every rank's files exist before rank 0 reports
    final = history[-1] if history else {}
    return {
        "config": {**asdict(config), "out": str(config.out), "hidden": list(config.hidden)},
        "world_size": info.world_size,
        "backend": info.backend,
        "device": str(info.device),
        "epochs_completed": epoch,
        "resumed_from": resumed_from,
        "history": history,
        "test_accuracy": accuracy(model, x_test, y_test),
        "train_loss": final.get("train_loss"),
        **_weight_summary(model),
        "nonfinite_skips": getattr(optimizer, "nonfinite_skips", 0),
        "checksum": checksums[0],
        "rank_checksums": checksums,
        "seconds": time.perf_counter() - start_time,
    }


def _all_sum(info: DistInfo, value: float) -> float:
    """``value`` summed over the ranks (in float64)."""
    if not info.distributed:
        return value
    device = info.device if info.backend == "nccl" else torch.device("cpu")
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())
