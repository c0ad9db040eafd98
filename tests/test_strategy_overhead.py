"""benchmarks/strategy_overhead.py: the time spent inside the probes is counted, and only it."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("avalanche")

from conftest import load_benchmark  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")


def test_time_probes_counts_the_probe_callbacks_alone(task_stream, task_bm):
    bench = load_benchmark("strategy_overhead")
    timer = bench.EpochTimer()
    probed = bench.build("bio+probes", task_stream, (16,), 1, 0, timer, "unused")
    plain = bench.build("bio", task_stream, (16,), 1, 0, timer, "unused")
    spent, nothing = bench.time_probes(probed), bench.time_probes(plain)
    t0 = time.perf_counter()
    probed.train(task_bm.train_stream[0])
    total = time.perf_counter() - t0
    after_training = spent[0]
    probed.eval(task_bm.test_stream[:1])
    plain.train(task_bm.train_stream[0])
    assert 0 < after_training < total  # the weight and task-encoding probes, not the training
    assert spent[0] > after_training  # the activity probe after the evaluation
    assert nothing[0] == 0.0  # no probes, nothing counted
