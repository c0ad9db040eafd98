"""What make_evaluator puts in TensorBoard: training accuracy, the run configuration (text and
hparams), probes during training at a cadence, labelled allocation heatmaps, Avalanche's
forgetting; probe cadence and unit sampling options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("avalanche")
pytest.importorskip("tensorboard")

from avalanche.training.plugins import EvaluationPlugin  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)
from tensorboard.backend.event_processing.event_file_loader import (  # noqa: E402
    EventFileLoader,
)

from strategies.avalanche import (  # noqa: E402
    ActivityProbeMetric,
    BioPlastic,
    WeightProbeMetric,
    make_evaluator,
    make_model,
)

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory, task_bm, task_stream):
    """Two experiences of BioPlastic with the evaluator's TensorBoard, probes every 3 steps."""
    logdir = tmp_path_factory.mktemp("tb")
    torch.manual_seed(0)
    evaluator = make_evaluator(
        tensorboard_dir=logdir,
        metadata={"strategy": "bio", "seed": 7, "stream": {"name": "split-digits"}},
        probe_size=32,
        probe_every=3,
    )
    strategy = BioPlastic(
        model=make_model(task_stream, hidden=(16,)),
        train_mb_size=32,
        train_epochs=2,
        eval_mb_size=256,
        evaluator=evaluator,
        device="cpu",
    )
    iterations = []
    for exp in task_bm.train_stream[:2]:
        strategy.train(exp)
        iterations.append(strategy.clock.train_iterations)
        strategy.eval(task_bm.test_stream[:2])
    for logger in evaluator.loggers:
        logger.writer.flush()
    events = EventAccumulator(str(logdir), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    return logdir, events, iterations


def test_training_accuracy_and_avalanche_forgetting(tb_run):
    _, events, _ = tb_run
    scalars = events.Tags()["scalars"]
    epoch_acc = [t for t in scalars if t.startswith("Top1_Acc_Epoch/train_phase/train_stream")]
    assert epoch_acc, scalars
    assert len(events.Scalars(epoch_acc[0])) == 2  # one value per epoch of that task
    # Avalanche's own forgetting, for reports that read Avalanche's metric values
    assert "StreamForgetting/eval_phase/test_stream" in scalars
    assert "ExperienceForgetting/eval_phase/test_stream/Task000/Exp000" in scalars


def test_probes_during_training_at_the_cadence(tb_run):
    _, events, iterations = tb_run
    steps = [e.step for e in events.Scalars("probe/weights/connectivity")]
    # every 3rd training iteration plus the end of each experience
    expected_during = iterations[-1] // 3
    assert len(steps) == expected_during + 2
    assert steps == sorted(steps) and len(set(steps)) >= expected_during
    train_curve = events.Scalars("probe/activity/trunk.2/population_sparseness/train")
    assert len(train_curve) == expected_during
    assert all(0 <= e.value <= 1 for e in train_curve)


def test_run_configuration_as_text_and_hparams(tb_run):
    logdir, events, _ = tb_run
    assert "config/text_summary" in events.Tags()["tensors"]
    text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    for expected in (
        "| strategy | bio |",
        "| seed | 7 |",
        "| stream/name | split-digits |",
        "| train_mb_size | 32 |",
        "| optimizer | BioRule |",
        "optimizer/lr",
    ):
        assert expected in text, text  # fmt: skip
    hparams = None
    for path in logdir.rglob("events.out.tfevents.*"):
        for event in EventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.tag == "_hparams_/session_start_info":
                    hparams = value.metadata.plugin_data.content
    assert hparams is not None
    assert b"train_mb_size" in hparams and b"split-digits" in hparams


def test_allocation_heatmap_is_labelled(tb_run):
    _, events, _ = tb_run
    assert "probe/task/allocation" in events.Tags()["images"]
    last = events.Images("probe/task/allocation")[-1]
    import io

    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(last.encoded_image_string)).convert("RGB"))
    # A matplotlib figure: white margins around the axes (the unlabelled heatmap has none),
    # and wide enough for the axis labels, the task names and the colour bar.
    white = (image > 250).all(axis=-1).mean()
    assert white > 0.2 and image.shape[1] >= 250


def test_probe_cadence_zero_and_sampled_units(task_bm, task_stream):
    """every=0: probes only at experience ends; max_units: the statistics on a fixed sample."""
    torch.manual_seed(0)
    weights = WeightProbeMetric(histograms=False, every=0)
    sampled = ActivityProbeMetric(probe_size=16, histograms=False, max_units=4)
    full = ActivityProbeMetric(probe_size=16, histograms=False, max_units=None)
    strategy = BioPlastic(
        model=make_model(task_stream, hidden=(16,)),
        train_mb_size=32,
        evaluator=EvaluationPlugin(weights, sampled, full, loggers=[]),
        device="cpu",
    )
    strategy.train(task_bm.train_stream[0])
    strategy.eval(task_bm.test_stream[:1])
    curves = strategy.evaluator.get_all_metrics()
    assert len(curves["probe/weights/connectivity"][1]) == 1
    # the participation ratio of 4 sampled units is at most 4; of all 16 it may exceed it
    name = "probe/activity/trunk.2/participation_ratio/Exp000"
    assert sampled.result()[name] <= 4.0 + 1e-9
    again = sampled._sample("trunk.2", torch.arange(32.0).reshape(2, 16))
    assert torch.equal(again, sampled._sample("trunk.2", torch.arange(32.0).reshape(2, 16)))
    assert again.shape == (2, 4)
    assert full.result()[name] >= 1.0
    with pytest.raises(ValueError, match="every"):
        WeightProbeMetric(every=-1)
    with pytest.raises(ValueError, match="max_units"):
        ActivityProbeMetric(max_units=1)
