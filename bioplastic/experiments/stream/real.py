"""Avalanche's own benchmarks (SplitMNIST, PermutedMNIST, SplitFMNIST, SplitCIFAR10/100) in
the stream comparison, read from a local root and never downloaded.

Their stream names are ``"avalanche-" + name`` for every name of
:data:`strategies.avalanche.real.REAL_BENCHMARKS` (``avalanche-split-mnist``, ...), so they
never collide with the offline streams of :func:`bioplastic.data.available_streams` (whose
``split-mnist`` reads IDX files with bioplastic's own reader). Models: the comparison's MLP for
the 28x28 benchmarks (multi-head in the ``"task"`` scenario); for CIFAR a ResNet-18 for 32x32
images (:func:`strategies.avalanche.resnets.resnet18_32x32`), Dale-typed with types tied across
layers that read the same tensor for the strategies that are Dale-typed, single-head only.

Example::

    run_stream_comparison("avalanche-split-mnist", "class", strategies=("bio", "naive"),
                          stream_kwargs={"root": "~/data"}, logdir="runs/")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from strategies.avalanche.config import strategy_defaults
from strategies.avalanche.models import make_model
from strategies.avalanche.real import REAL_BENCHMARKS, real_benchmark
from strategies.avalanche.resnets import dalify_resnet, resnet18_32x32

__all__ = ["AVALANCHE_STREAMS", "AvalancheStream", "avalanche_model", "make_avalanche_stream"]

_PREFIX = "avalanche-"
#: Stream names of Avalanche's own benchmarks.
AVALANCHE_STREAMS: tuple[str, ...] = tuple(_PREFIX + name for name in sorted(REAL_BENCHMARKS))
#: The stream keyword arguments these streams take.
STREAM_KWARGS = ("root", "n_experiences")


@dataclass
class AvalancheStream:
    """One of Avalanche's benchmarks, with what the comparison needs to know about it."""

    name: str
    scenario: str
    n_experiences: int
    n_classes: int
    input_shape: tuple[int, ...]
    benchmark: Any

    @property
    def is_image(self) -> bool:
        """3-channel 32x32 images (CIFAR): trained with a ResNet."""
        return self.input_shape[0] == 3


def check_avalanche_stream(name: str, scenario: str, kwargs: dict[str, Any]) -> None:
    """Raise ``ValueError`` for arguments the benchmark cannot take, before any work."""
    if scenario not in ("class", "task"):
        raise ValueError(f"{name} supports the scenarios class and task, not {scenario!r}")
    unknown = sorted(set(kwargs) - set(STREAM_KWARGS))
    if unknown:
        raise ValueError(f"{name} takes only {', '.join(STREAM_KWARGS)}, not {', '.join(unknown)}")
    if kwargs.get("root") is None:
        raise ValueError(f"{name} needs stream_kwargs['root'] (a folder with the dataset files)")
    spec = REAL_BENCHMARKS[name.removeprefix(_PREFIX)]
    if spec.input_shape[0] == 3 and scenario == "task":
        raise ValueError(
            f"{name}: the ResNet is single-head; use scenario 'class' (task-incremental CIFAR "
            "needs a multi-head ResNet, which the comparison does not build)"
        )


def make_avalanche_stream(
    name: str, scenario: str, seed: int, root: str | Path, n_experiences: int | None = None
) -> AvalancheStream:
    """Build benchmark ``name`` (one of :data:`AVALANCHE_STREAMS`) from the files in ``root``.

    Raises ``FileNotFoundError`` naming the missing files (nothing is downloaded).
    """
    check_avalanche_stream(name, scenario, {"root": root})
    short = name.removeprefix(_PREFIX)
    spec = REAL_BENCHMARKS[short]
    benchmark = real_benchmark(
        short, root, n_experiences=n_experiences, seed=seed, return_task_id=scenario == "task"
    )
    return AvalancheStream(
        name=name,
        scenario=scenario,
        n_experiences=len(benchmark.train_stream),
        # PermutedMNIST reports 10 x n_experiences classes, but every experience's labels are 0..9
        n_classes=spec.n_classes,
        input_shape=spec.input_shape,
        benchmark=benchmark,
    )


def avalanche_model(
    stream: AvalancheStream, strategy: str, hidden: tuple[int, ...] = (256,), on_off: bool = False
) -> nn.Module:
    """The comparison's model for ``stream`` and ``strategy`` (see the module docstring)."""
    if stream.is_image:
        model = resnet18_32x32(stream.n_classes)
        if strategy_defaults(strategy).get("dalify"):
            dalify_resnet(model, stream.input_shape)  # the strategy keeps these types
        return model
    return make_model(stream, hidden, on_off)
