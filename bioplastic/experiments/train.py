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
* **The rate.** ``bio`` anneals its rate over the whole run (``BioRule(total_steps=epochs x
  batches per epoch)``; a ``total_steps`` in the rule options wins, ``None`` for a constant
  rate). The schedule's position is part of the optimizer's state, so a resumed run continues
  it.
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
* **A rank that stops answering** (frozen, deadlocked, its machine gone) makes the others'
  next collective fail after ``timeout`` seconds (``init_distributed(timeout_s=...)``,
  ``bioplastic train --timeout``) instead of waiting silently. Before every collective each
  rank records in the process group's store how many collectives it has entered; when one
  times out, the ranks that recorded fewer are the ones that did not answer, and
  :class:`RankTimeout` names them.

Example::

    info = init_distributed("auto")          # reads torchrun's RANK/WORLD_SIZE, if any
    try:
        result = train(TrainConfig(rule="bio", epochs=5, out=Path("runs/train")), info)
    finally:
        shutdown(info)
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from bioplastic._io import lock_folder, remove_stale_temporaries
from bioplastic._progress import Stages, bar
from bioplastic.baselines import OPTIMIZER_NAMES, interneurons_for, make_optimizer
from bioplastic.dale import BioMLP
from bioplastic.distributed import (
    BACKENDS,
    CHECKPOINT_FORMAT,
    CHECKPOINT_NAME,
    CHECKPOINT_VERSION,
    DEVICES,
    DistInfo,
    TrainingInterrupted,
    agree_to_stop,
    all_sum,
    check_ranks_agree,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    shard,
    sigterm_flag,
    state_checksum,
    verify_rule_state,
)
from bioplastic.experiments._roll import RankTimeout, _Roll
from bioplastic.optim import BioRule
from bioplastic.probes import dale_violations, synaptic_layers
from bioplastic.train import accuracy

__all__ = ["BACKENDS", "DATASETS", "DEVICES", "RankTimeout", "TrainConfig", "train"]

logger = logging.getLogger(__name__)

DATASETS = ("digits", "mnist1d")
# dale_sign buffers never change: DDP need not broadcast them before every forward.
# torch 2.14 names this forward_sync_buffers (broadcast_buffers is deprecated); older torch
# (the CUDA builds of GPU machines) only knows broadcast_buffers.
_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)
#: Options that must match between a checkpoint and the run that resumes from it.
_RESUME_KEYS = (
    "dataset", "rule", "rule_options", "hidden", "interneurons", "batch_size", "seed",
    "consolidate", "consolidate_factor",
)  # fmt: skip
#: Resume keys that checkpoints of earlier versions lack, with the value those runs had.
_KEYS_ADDED = {"interneurons": 0.0}


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
        interneurons: the BioMLP's ``interneurons``: feedforward inhibition through this
            fraction of interneurons in every layer after the first; ``None`` (default): the
            rule's, :func:`bioplastic.baselines.interneurons_for` (0.1 for bio, whose
            homeostasis keeps them balanced; 0, the plain Dale MLP, for the other rules).
        epochs: total number of epochs (a resumed run trains the remaining ones).
        batch_size: the *global* batch size, split over the ranks.
        seed: seeds the model, the rule's generator and the data order.
        consolidate: fraction in [0, 1] of present synapses consolidated after every epoch
            (``BioRule.consolidate``; bio and eg only; 0 disables).
        consolidate_factor: plasticity factor in (0, 1] of a consolidation.
        out: output folder (checkpoint, per-rank states).
        resume: continue from ``out/checkpoint.pt`` if it exists.
        overwrite: replace a previous run's ``checkpoint.pt`` and ``train.json`` in ``out``
            (without it, or ``resume``, a folder holding a run is refused).
        save_rank_states: every rank also writes its final model and optimizer state to
            ``out/rank-<r>.pt`` (to compare ranks).
        timeout: seconds a rank waits for the others at a collective before
            :class:`RankTimeout`; give :func:`init_distributed` the same value (its
            ``timeout_s``), which sets the process group's timeout.
    """

    dataset: str = "digits"
    rule: str = "bio"
    rule_options: dict[str, Any] = field(default_factory=dict)
    hidden: tuple[int, ...] = (64,)
    interneurons: float | None = None
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    consolidate: float = 0.0
    consolidate_factor: float = 0.5
    out: Path = Path("runs/train")
    resume: bool = False
    save_rank_states: bool = False
    overwrite: bool = False
    timeout: float = 300.0

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
        i = self.interneurons
        if i is not None and not (
            isinstance(i, (int, float)) and not isinstance(i, bool) and 0 <= i <= 1
        ):
            raise ValueError(f"interneurons must be a fraction in [0, 1], got {i!r}")
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
        t = self.timeout
        if not (isinstance(t, (int, float)) and not isinstance(t, bool) and 0 < t < math.inf):
            raise ValueError(f"timeout must be a positive number of seconds, got {t!r}")
        # the rule's options, checked by building it on a stand-in (before any file is written)
        _build_optimizer(self, [nn.Parameter(torch.zeros(2, 2))])

    def fingerprint(self) -> dict[str, Any]:
        """The entries a checkpoint must match to be resumed, as plain Python values."""
        data = asdict(self)
        data["hidden"] = list(self.hidden)
        data["interneurons"] = self.inhibition
        return {k: data[k] for k in _RESUME_KEYS}

    @property
    def inhibition(self) -> float:
        """``interneurons``, or the rule's default when it is ``None``."""
        return interneurons_for(self.rule) if self.interneurons is None else self.interneurons


def _load_data(dataset: str, device: torch.device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    from bioplastic.data.sources import load_digits_arrays, load_mnist1d_arrays

    if dataset == "digits":
        arrays = load_digits_arrays(seed=0)
    else:
        arrays = load_mnist1d_arrays()
    x_train, y_train, x_test, y_test = (torch.as_tensor(a).to(device) for a in arrays)
    return x_train, y_train, x_test, y_test


def _build_optimizer(
    config: TrainConfig, params: Any, total_steps: int | None = None
) -> torch.optim.Optimizer:
    """The rule's optimizer, with :func:`_run_schedule`."""
    try:
        return make_optimizer(config.rule, params, **{**_run_schedule(config, total_steps),
                                                      **config.rule_options})  # fmt: skip
    except TypeError as err:  # a value of the wrong kind (names are checked by make_optimizer)
        raise ValueError(f"a bad option value for rule {config.rule!r} ({err})") from None


def _run_schedule(config: TrainConfig, total_steps: int | None) -> dict[str, Any]:
    """``{"total_steps": the run's steps}`` for bio, unless its options set ``total_steps``."""
    if config.rule != "bio" or not total_steps or "total_steps" in config.rule_options:
        return {}
    return {"total_steps": total_steps}


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
    wanted = config.fingerprint()
    saved = {k: data["config"].get(k, _KEYS_ADDED.get(k)) for k in _RESUME_KEYS}
    differ = [k for k in _RESUME_KEYS if saved[k] != wanted[k]]
    if differ:
        detail = ", ".join(f"{k} {saved[k]!r} (now {wanted[k]!r})" for k in differ)
        hint = f"; pass --interneurons {saved['interneurons']:g}" * (differ == ["interneurons"])
        raise ValueError(f"{path}: checkpoint of another configuration: {detail}{hint}")
    if data["epoch"] > config.epochs:
        raise ValueError(
            f"{path}: checkpoint has {data['epoch']} epochs done, more than epochs={config.epochs}"
        )
    return data


def _restore(
    resume: dict[str, Any] | None, model: nn.Module, optimizer, config: TrainConfig,
    info: DistInfo, total_steps: int,
) -> tuple[int, int, float, list[dict[str, Any]]]:  # fmt: skip
    """Load a checkpoint's model, optimizer and RNG state; returns ``(epoch, batch, loss_sum,
    history)`` to continue from (zeros without a checkpoint). A bio run resumed with more (or
    fewer) epochs anneals over its new length from where it is (``total_steps`` of the run)."""
    if resume is None:
        return 0, 0, 0.0, []
    model.load_state_dict(resume["model"])
    optimizer.load_state_dict(resume["optimizer"])
    for group in optimizer.param_groups:
        group.update(_run_schedule(config, total_steps))
    verify_rule_state(config.out / CHECKPOINT_NAME, model, optimizer)
    set_rng_state(resume["rng"])
    epoch, batch = int(resume["epoch"]), int(resume["batch"])
    # the loss summed over all ranks so far in this epoch; counted once, on rank 0
    loss_sum = float(resume.get("loss_sum", 0.0)) if info.is_main else 0.0
    history = list(resume.get("history", []))
    if info.is_main:
        logger.info("resuming %s at epoch %d, batch %d", config.out, epoch + 1, batch)
    return epoch, batch, loss_sum, history


def _step(net: nn.Module, optimizer, x: Tensor, y: Tensor, info: DistInfo, n_global: int) -> float:
    """One optimizer step on this rank's shard of a global batch of ``n_global`` samples; the
    loss is scaled so that DDP's gradient average equals the global batch's mean gradient.
    Returns the shard's summed loss."""
    optimizer.zero_grad(set_to_none=True)
    losses = nn.functional.cross_entropy(net(x), y, reduction="none")
    (losses.sum() * (info.world_size / n_global)).backward()
    optimizer.step()
    return float(losses.detach().sum())


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
        ``checksum`` and every rank's ``rank_checksums``, where training resumed from, and
        ``stages_s`` (wall time of training, evaluation and checkpoints in this process).

    Rank 0 holds a lock on ``config.out`` (:func:`bioplastic._io.lock_folder`) for the whole
    run; a folder that holds a previous run is refused unless ``config.resume`` (continue it)
    or ``config.overwrite`` (replace it).

    Raises:
        ValueError: a bad configuration, a folder holding another run, or an unreadable,
            corrupted or mismatched checkpoint.
        bioplastic._io.FolderLocked: another run writes to ``config.out``.
        TrainingInterrupted: SIGTERM arrived; a checkpoint was written.
        RuntimeError: the ranks' states diverged.
    """
    info = info or DistInfo()
    config.validate()
    _check_previous_run(config)
    if not info.is_main:
        return _train(config, info, progress)
    with lock_folder(config.out):
        if config.resume:
            remove_stale_temporaries(config.out)
        elif config.overwrite:
            for name in (CHECKPOINT_NAME, "train.json"):
                (config.out / name).unlink(missing_ok=True)
        return _train(config, info, progress)


def _check_previous_run(config: TrainConfig) -> None:
    """Refuse to write over a previous run unless asked to resume or overwrite it."""
    if config.resume or config.overwrite:
        return
    found = [n for n in (CHECKPOINT_NAME, "train.json") if (config.out / n).exists()]
    if found:
        raise ValueError(
            f"{config.out} holds a previous run ({', '.join(found)}); pass --resume to continue "
            "it or --overwrite to replace it"
        )


def _build_model(
    config: TrainConfig, info: DistInfo, n_inputs: int, n_classes: int, total_steps: int
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """The model and optimizer, identical on every rank.

    We seed, not broadcast: the same seed on every rank gives the same model and the same
    BioRule generator seed (BioRule(seed=None) draws it from torch's global generator).
    """
    torch.manual_seed(config.seed)
    model = BioMLP(n_inputs, tuple(config.hidden), n_classes, seed=config.seed,
                   interneurons=config.inhibition)  # fmt: skip
    model.to(info.device)
    return model, _build_optimizer(config, model.parameters(), total_steps)


def _train(
    config: TrainConfig, info: DistInfo, progress: Callable[[str], None] | None
) -> dict[str, Any]:
    """:func:`train` once the output folder is settled (locked on rank 0)."""
    start_time = time.perf_counter()
    resume = _resume_state(config, info)
    x_train, y_train, x_test, y_test = _load_data(config.dataset, info.device)
    n_classes = int(max(int(y_train.max()), int(y_test.max()))) + 1
    total_steps = config.epochs * math.ceil(len(x_train) / config.batch_size)
    model, optimizer = _build_model(config, info, x_train.shape[1], n_classes, total_steps)
    epoch, batch, loss_sum, history = _restore(resume, model, optimizer, config, info,
                                               total_steps)  # fmt: skip
    resumed_from = None if resume is None else {"epoch": epoch, "batch": batch}

    roll = _Roll(info, config.timeout)
    # Before DDP's constructor broadcasts rank 0's weights: this checks the seeding itself.
    with roll.collective("at the start"):
        check_ranks_agree(info, state_checksum(model, optimizer), "at the start")
    if progress is not None and info.is_main:
        progress(_start_message(config, info, resume, epoch, batch))
    net: nn.Module = model
    if info.distributed:
        device_ids = [info.device] if info.device.type == "cuda" else None
        net = DistributedDataParallel(model, device_ids=device_ids, **_NO_BUFFER_SYNC)

    ckpt_path = config.out / CHECKPOINT_NAME
    n = len(x_train)
    batches_per_epoch = math.ceil(n / config.batch_size)

    def checkpoint(at_epoch: int, at_batch: int, partial_loss: float) -> None:
        if info.is_main:
            _save_training_checkpoint(ckpt_path, config, info, model, optimizer, history,
                                      at_epoch, at_batch, partial_loss)  # fmt: skip

    net.train()
    stages = Stages()
    done = epoch * batches_per_epoch + batch
    batches = bar(total=config.epochs * batches_per_epoch, initial=done, desc="train",
                  unit="batch", active=info.is_main)  # fmt: skip
    with sigterm_flag() as sigterm, batches:
        while epoch < config.epochs:
            t_epoch = time.perf_counter()
            order = _epoch_order(n, config.seed, epoch).to(info.device)
            while batch < batches_per_epoch:
                idx = shard(
                    order[batch * config.batch_size : (batch + 1) * config.batch_size],
                    info.rank,
                    info.world_size,
                )
                n_global = min(config.batch_size, n - batch * config.batch_size)
                with roll.collective(f"in epoch {epoch + 1}, batch {batch + 1}"):
                    loss_sum += _step(net, optimizer, x_train[idx], y_train[idx], info, n_global)
                    stop = agree_to_stop(info, sigterm[0])
                batch += 1
                batches.update(1)
                if stop:
                    with roll.collective("while stopping on SIGTERM"):
                        checkpoint(epoch, batch, all_sum(info, loss_sum))
                        if info.distributed:
                            dist.barrier()
                    raise TrainingInterrupted(ckpt_path, epoch, batch)
            if config.consolidate and isinstance(optimizer, BioRule):
                optimizer.consolidate(config.consolidate, config.consolidate_factor)
            with roll.collective(f"after epoch {epoch + 1}"):
                epoch_loss = all_sum(info, loss_sum) / n
                checksum = check_ranks_agree(
                    info, state_checksum(model, optimizer), f"after epoch {epoch + 1}"
                )[0]
            stages.add("train", time.perf_counter() - t_epoch)
            record = {"epoch": epoch + 1, "train_loss": epoch_loss}
            if info.is_main:
                with stages("evaluate"):
                    record["test_accuracy"] = accuracy(model, x_test, y_test)
                record["checksum"] = checksum
            history.append(record)
            epoch, batch, loss_sum = epoch + 1, 0, 0.0
            with stages("checkpoint"):
                checkpoint(epoch, 0, 0.0)
            if progress is not None and info.is_main:
                progress(
                    f"epoch {epoch}/{config.epochs}: loss {epoch_loss:.4f} "
                    f"test acc {record['test_accuracy']:.4f} "
                    f"({time.perf_counter() - t_epoch:.1f} s)"
                )

    with roll.collective("at the end"):
        result = _finish(config, info, model, optimizer, x_test, y_test, epoch, resumed_from,
                         history, start_time)  # fmt: skip
    result["stages_s"] = dict(stages.seconds)  # this process's, since a resume
    return result


def _start_message(config: TrainConfig, info: DistInfo, resume: Any, epoch: int, batch: int) -> str:
    """The progress line announcing the run (ranks, backend, device, where it resumes)."""
    where = "single process" if info.backend is None else f"{info.backend}"
    start = "" if resume is None else f", resuming at epoch {epoch + 1} batch {batch}"
    return (
        f"training {config.rule} on {config.dataset} (hidden {list(config.hidden)}, interneurons "
        f"{config.inhibition:g}): {info.world_size} rank(s) ({where}, {info.device}){start}"
    )


def _save_training_checkpoint(
    path: Path, config: TrainConfig, info: DistInfo, model: nn.Module, optimizer: Any,
    history: list[dict[str, Any]], at_epoch: int, at_batch: int, partial_loss: float,
) -> None:  # fmt: skip
    """Write the checkpoint ``_restore`` reads: resumes at ``at_epoch``, ``at_batch``."""
    save_checkpoint(path, {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "config": config.fingerprint(),
        "epoch": at_epoch,
        "batch": at_batch,
        "loss_sum": partial_loss,
        "history": history,
        "world_size": info.world_size,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
    })  # fmt: skip


def _finish(
    config: TrainConfig, info: DistInfo, model: nn.Module, optimizer: Any, x_test: Tensor,
    y_test: Tensor, epoch: int, resumed_from: dict[str, int] | None,
    history: list[dict[str, Any]], start_time: float,
) -> dict[str, Any]:  # fmt: skip
    """Check the ranks agree, save per-rank states if asked, and return :func:`train`'s result."""
    checksums = check_ranks_agree(info, state_checksum(model, optimizer), "at the end")
    if config.save_rank_states:
        save_checkpoint(
            config.out / f"rank-{info.rank}.pt",
            {"model": model.state_dict(), "optimizer": optimizer.state_dict()},
        )
    if info.distributed:
        dist.barrier()  # every rank's files exist before rank 0 reports
    final = history[-1] if history else {}
    return {
        "config": {**asdict(config), "out": str(config.out), **config.fingerprint()},
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
