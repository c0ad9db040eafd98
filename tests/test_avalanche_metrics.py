"""Probe metrics as Avalanche PluginMetrics, the JSON results logger and TensorBoard output."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

pytest.importorskip("avalanche")

from avalanche.evaluation.metric_results import TensorImage  # noqa: E402
from avalanche.evaluation.metrics import accuracy_metrics  # noqa: E402
from avalanche.training import Naive  # noqa: E402
from avalanche.training.plugins import EvaluationPlugin  # noqa: E402

from bioplastic.data import split_stream  # noqa: E402
from strategies.avalanche import (  # noqa: E402
    ActivityProbeMetric,
    BioPlastic,
    HistogramValue,
    JSONResultsLogger,
    MatrixValue,
    MultiHeadMLP,
    TaskEncodingMetric,
    WeightProbeMetric,
    avalanche_benchmark,
    make_evaluator,
    make_model,
    make_strategy,
    probe_metrics,
)
from strategies.avalanche.loggers import to_jsonable  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")


def test_packnet_allocation_is_recovered_by_the_probe():
    """The task-encoding probe, run on PackNet, finds PackNet's own per-task weight ownership.

    Ground truth: each PackNet layer's ``task_index`` buffer (task ``t`` owns the weights with
    ``task_index == t``; Avalanche's PackNetModel). The probe only sees weights.
    """
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    n = 240
    y = torch.arange(n) % 6
    # Gaussian inputs (no dead input features) with a class signal.
    x = torch.randn(n, 12, generator=gen) + 2.0 * nn.functional.one_hot(y, 12).float()
    stream = split_stream("toy", x, y, x[:60], y[:60], n_experiences=3, scenario="task")
    bm = avalanche_benchmark(stream)
    probe = TaskEncodingMetric(recruit_by="changed", rel_threshold=1e-6, figures=False)
    strict = TaskEncodingMetric(figures=False)  # default: grown or strengthened (x2)
    strategy = make_strategy(
        "packnet",
        MultiHeadMLP(12, 2, hidden=(16,)),
        train_epochs=3,
        evaluator=EvaluationPlugin(probe, strict, loggers=[]),
        device="cpu",
    )
    for exp in bm.train_stream:
        strategy.train(exp)
    owner = strategy.model.wrappee[1].task_index  # the trunk's PackNet layer
    assert len(probe.synapse_masks) == 3
    for task, masks in enumerate(probe.synapse_masks):
        owned = owner == task
        assert owned.any()
        assert torch.equal(masks["wrappee.1.wrappee"], owned), task
    overlap = probe.result()["probe/task/synapse_overlap"].matrix
    assert torch.equal(overlap, torch.eye(3, dtype=overlap.dtype))  # PackNet shares nothing
    # The stricter default criterion finds part of what PackNet allotted, and nothing else.
    for task, masks in enumerate(strict.synapse_masks):
        found = masks["wrappee.1.wrappee"]
        assert not (found & (owner != task)).any(), task


def test_probes_once_per_experience_json_and_tensorboard(tmp_path, task_bm, task_stream):
    torch.manual_seed(0)
    json_path = tmp_path / "run" / "results.json"
    evaluator = make_evaluator(
        tensorboard_dir=tmp_path / "tb",
        json_path=json_path,
        metadata={"strategy": "bio", "seed": 0},
        probe_size=32,
    )
    strategy = BioPlastic(
        model=make_model(task_stream, hidden=(16,)),
        train_mb_size=32,
        train_epochs=1,
        evaluator=evaluator,
        device="cpu",
    )
    for exp in task_bm.train_stream[:2]:
        strategy.train(exp)
        strategy.eval(task_bm.test_stream[:2])
    curves = evaluator.get_all_metrics()
    # computed once per training experience, not per iteration
    assert len(curves["probe/weights/connectivity"][1]) == 2
    assert len(curves["probe/task/capacity_used"][1]) == 2
    assert len(curves["probe/activity/trunk.2/population_sparseness/Exp000"][1]) == 2

    data = json.loads(json_path.read_text())
    assert data["format"] == "bioplastic-results" and data["metadata"]["seed"] == 0
    assert [e["experience"] for e in data["experiences"]] == [0, 1]
    last = data["experiences"][1]["metrics"]
    assert last["probe/weights/dale_violations"] == 0
    assert last["probe/weights/sign_flips"] == 0
    assert 0 < last["probe/weights/connectivity"] <= 1
    overlap = last["probe/task/synapse_overlap"]
    assert len(overlap) == 2 and overlap[0][0] == overlap[1][1] == 1.0
    assert len(last["probe/task/allocation"]) == 2 and len(last["probe/task/allocation"][0]) == 16
    used = [e["metrics"]["probe/task/capacity_used"] for e in data["experiences"]]
    assert 0 < used[0] <= used[1] <= 1
    assert "Top1_Acc_Exp/eval_phase/test_stream/Task001/Exp001" in last
    assert "probe/activity/trunk.2/lifetime_sparseness/Exp001" in last
    hist = last["probe/weights/trunk.1/log_magnitude"]
    assert hist["n"] > 0 and math.isfinite(hist["mean"])
    assert not list(json_path.parent.glob("*.tmp"))  # atomic writes leave nothing behind

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0, "histograms": 0})
    events.Reload()
    tags = events.Tags()
    assert "probe/task/allocation" in tags["images"]
    assert "probe/task/synapse_overlap" in tags["images"]
    assert "probe/weights/trunk.1/log_magnitude" in tags["histograms"]
    assert "probe/activity/trunk.2/activity/Exp000" in tags["histograms"]
    assert "probe/weights/connectivity" in tags["scalars"]


def test_probes_work_for_a_plain_backprop_baseline(task_bm):
    """No Dale types, no BioRule: the probes still run (signs by each weight's own sign)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 2))
    weights, activity = WeightProbeMetric(), ActivityProbeMetric(probe_size=16)
    task = TaskEncodingMetric(figures="labeled")
    strategy = Naive(
        model=model,
        optimizer=torch.optim.Adam(model.parameters(), lr=0.01),
        criterion=nn.CrossEntropyLoss(),
        train_mb_size=16,
        evaluator=EvaluationPlugin(weights, activity, task, loggers=[]),
    )
    for exp in task_bm.train_stream[:2]:
        strategy.train(exp)
        strategy.eval(task_bm.test_stream[:1])
    last = strategy.evaluator.get_last_metrics()
    assert "probe/rule/eliminated" not in last
    assert last["probe/weights/1/connectivity"] == 1.0
    assert last["probe/weights/1/dale_violations"] > 0  # backprop mixes signs freely
    assert 0 <= last["probe/activity/2/silent_fraction/Exp000"] <= 1
    assert 1 <= last["probe/activity/2/participation_ratio/Exp000"] <= 16
    assert last["probe/task/allocation"].matrix.shape == (2, 16)
    image = last["probe/task/allocation"].image().image
    assert image.dim() == 3 and image.shape[0] == 3
    assert len(task.synapse_masks) == 2


def test_consolidated_synapses_count_as_recruited(task_bm, task_stream):
    torch.manual_seed(0)
    probe = TaskEncodingMetric(rel_threshold=100.0, figures=False)  # only growth/consolidation
    strategy = BioPlastic(
        model=make_model(task_stream, hidden=(16,)),
        train_mb_size=32,
        train_epochs=1,
        evaluator=EvaluationPlugin(probe, loggers=[]),
        consolidate={"fraction": 0.25, "factor": 0.5},
        device="cpu",
    )
    strategy.train(task_bm.train_stream[0])
    weight = strategy.model.trunk[1].weight
    consolidated = strategy.optimizer.plasticity(weight) < 1
    assert consolidated.any()
    assert torch.equal(probe.synapse_masks[0]["trunk.1"], consolidated.cpu())


def test_activity_probe_uses_a_fixed_batch(task_bm, task_stream):
    torch.manual_seed(0)
    probe = ActivityProbeMetric(probe_size=8, histograms=False)
    strategy = BioPlastic(
        model=make_model(task_stream, hidden=(8,)),
        eval_mb_size=256,
        evaluator=EvaluationPlugin(probe, loggers=[]),
        device="cpu",
    )
    first = strategy.eval(task_bm.test_stream[:1])
    second = strategy.eval(task_bm.test_stream[:1])
    keys = [k for k in first if k.startswith("probe/activity")]
    assert keys and all(first[k] == second[k] or math.isnan(first[k]) for k in keys)
    with pytest.raises(ValueError, match="probe_size"):
        ActivityProbeMetric(probe_size=1)
    with pytest.raises(ValueError, match="recruit_by"):
        TaskEncodingMetric(recruit_by="largest")


def test_activity_probe_measures_trained_experiences_only_by_default(task_bm, task_stream):
    """probe_metrics' default (PROBES["eval_experiences"] = "trained"): an evaluated experience
    is probed once an experience of its index was trained; "all" probes every one."""
    default = next(m for m in probe_metrics() if isinstance(m, ActivityProbeMetric))
    assert default.eval_experiences == "trained"
    key = "probe/activity/trunk.2/silent_fraction/Exp{:03d}"

    def probed(which: str) -> list[list[int]]:
        """Per evaluation, the experiences whose activity was probed."""
        torch.manual_seed(0)
        probe = ActivityProbeMetric(probe_size=8, histograms=False, eval_experiences=which)
        strategy = BioPlastic(
            model=make_model(task_stream, hidden=(8,)), train_mb_size=32,
            evaluator=EvaluationPlugin(probe, loggers=[]), device="cpu",
        )  # fmt: skip
        seen = []
        for k in range(2):
            strategy.train(task_bm.train_stream[k])
            results = strategy.eval(task_bm.test_stream[:2])
            seen.append([e for e in range(2) if key.format(e) in results])
        return seen

    assert probed("trained") == [[0], [0, 1]]
    assert probed("all") == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match="eval_experiences"):
        ActivityProbeMetric(eval_experiences="seen")


def test_values_and_json_conversion(tmp_path):
    hist = HistogramValue(torch.tensor([1.0, 2.0, 3.0]))
    assert str(hist).startswith("histogram(n=3") and hist.summary()["mean"] == 2.0
    matrix = MatrixValue(torch.tensor([[1.0, float("nan")], [0.5, 1.0]]), figure="fast")
    assert matrix.tolist() == [[1.0, None], [0.5, 1.0]]
    assert matrix.alternatives == ()  # drawn only when a logger asks for an image
    assert matrix.best_supported_value(float, int) is None
    assert matrix.alternatives == ()
    assert matrix.best_supported_value(TensorImage, float).image.shape[0] == 3
    assert matrix.image().image.shape == (3, 64, 64)  # fast: 32 pixels per cell
    assert to_jsonable(float("nan")) is None and to_jsonable(float("inf")) is None
    assert to_jsonable(torch.tensor(2.5)) == 2.5
    with pytest.raises(ValueError, match="figure"):
        MatrixValue(torch.eye(2), figure="pretty")
    logger = JSONResultsLogger(tmp_path / "r.json", metadata={"a": float("nan")})
    logger.write()
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["metadata"] == {"a": None} and data["experiences"] == []
    with pytest.raises(ValueError, match="folder"):
        JSONResultsLogger(tmp_path)
    # An evaluator with accuracy only still works alongside the logger.
    assert isinstance(
        EvaluationPlugin(accuracy_metrics(stream=True), loggers=[logger]), EvaluationPlugin
    )


def test_record_units_routes_task_labels_and_keeps_pre_activations(task_bm):
    """Multi-head models get their task labels (silent heads left out); a layer's output is
    recorded before an in-place ReLU overwrites it."""
    from avalanche.models.utils import avalanche_model_adaptation

    from strategies.avalanche.metrics import record_units

    model = MultiHeadMLP(64, 2, hidden=(16,))
    for exp in task_bm.train_stream[:3]:
        avalanche_model_adaptation(model, exp)
    model.trunk[2].inplace = True
    x = torch.randn(20, 64)
    t = torch.tensor([0] * 10 + [2] * 10)
    heads = [f"heads.classifiers.{k}.classifier" for k in range(3)]
    acts, inputs = record_units(model, x, t, ["trunk.1", *heads], inputs_of=heads, batch_size=8)
    assert list(acts) == ["trunk.1", heads[0], heads[2]]  # no sample of task 1
    assert list(inputs) == [heads[0], heads[2]]
    assert acts[heads[0]].shape == (10, 2) and inputs[heads[2]].shape == (10, 16)
    assert (acts["trunk.1"] < 0).any()  # pre-activations, not the ReLU's output
    with torch.no_grad():
        hidden = model.trunk(x)
        assert torch.allclose(inputs[heads[0]], hidden[:10])
        expected = model.heads.classifiers["2"].classifier(hidden[10:])
        assert torch.allclose(acts[heads[2]], expected)


def test_activity_probe_records_the_evaluation_pass_itself(task_bm, task_stream):
    """After an evaluated experience the probe's values come from the evaluation's own forward
    passes (first probe_size samples across mini-batches, hooks gone afterwards) and equal a
    separate forward pass on the same fixed batch; where no hook fires it runs that pass."""
    from strategies.avalanche.benchmarks import _first_inputs

    torch.manual_seed(0)
    probe = ActivityProbeMetric(probe_size=8)
    model = make_model(task_stream, hidden=(16,))
    strategy = BioPlastic(
        model=model, train_mb_size=16, eval_mb_size=5, device="cpu",
        evaluator=EvaluationPlugin(probe, loggers=[]),
    )  # fmt: skip
    strategy.train(task_bm.train_stream[0])
    calls = []
    model.trunk[1].register_forward_hook(lambda m, i, o: calls.append(len(o)))
    results = strategy.eval(task_bm.test_stream[:1])
    assert calls[:2] == [5, 5]  # the evaluation's mini-batches: the probe took 5 + 3 samples
    assert len(calls) == 5  # ceil(24 / 5): no further forward pass for the probe
    assert sum(len(m._forward_hooks) for m in model.modules()) == 1  # the test's hook alone
    x, t = _first_inputs(task_bm.test_stream[0].dataset.eval(), 8)
    expected = probe._measure(model, x, t, "Exp000", True)
    assert expected.keys() == {k for k in results if k.startswith("probe/activity")}
    for k in [k for k in expected if not isinstance(expected[k], HistogramValue)]:
        assert results[k] == pytest.approx(expected[k], rel=1e-5, abs=1e-6, nan_ok=True), k
    silent = ActivityProbeMetric(probe_size=8)  # a recorder whose hooks never fire
    silent._trained.add(0)
    strategy.experience = task_bm.test_stream[0]
    silent.before_eval_exp(strategy)
    fallback = {v.name: v.value for v in silent.after_eval_exp(strategy)}
    assert fallback.keys() == expected.keys()
    assert fallback["probe/activity/trunk.2/silent_fraction/Exp000"] == pytest.approx(
        expected["probe/activity/trunk.2/silent_fraction/Exp000"]
    )


def test_task_encoding_records_every_task_batch_in_one_pass(task_bm):
    """The task-encoding probe's unit activities per task come from one recording of all task
    batches; a multi-task module that runs each task's samples apart (in task order) and task
    batches out of task order still give each task its own mean activities."""
    from types import SimpleNamespace

    from avalanche.models import MultiTaskModule
    from avalanche.models.utils import avalanche_model_adaptation

    class PerTask(MultiTaskModule):  # runs each task's samples apart, like MTSimpleMLP
        def __init__(self):
            super().__init__()
            self.trunk = nn.Sequential(nn.Linear(64, 12), nn.ReLU())
            self.head = nn.Linear(12, 2)
            self.scale = nn.Parameter(torch.tensor([0.5, 1.0, 2.0]))

        def forward_single_task(self, x, task_label):
            return self.head(self.trunk(x * self.scale[task_label]))

    torch.manual_seed(0)
    model = PerTask()
    for exp in task_bm.train_stream[:3]:
        avalanche_model_adaptation(model, exp)
    probe = TaskEncodingMetric(rel_activity=0.5)
    probe.task_batches = [
        (torch.randn(7, 64), torch.full((7,), task)) for task in (2, 0, 1)
    ]  # a stream that trains task 2 first
    names = ["trunk.1"]
    one_pass, means = probe._unit_masks(SimpleNamespace(model=model))
    by_task, expected = probe._unit_masks_by_task(model, names, rectify=False)
    assert torch.allclose(means, expected)
    assert torch.equal(one_pass, by_task)
    assert not torch.allclose(means[0], means[1])  # tasks differ, so a mix-up would show


def test_weight_probe_measures_again_only_layers_that_changed():
    """Rows of layers whose weights did not change since the last report are reused; any
    change (even through ``.data``, which torch does not version) is measured again, and the
    cache stays out of checkpoints."""
    from types import SimpleNamespace

    from bioplastic import dalify
    from bioplastic import probes as P

    torch.manual_seed(0)
    model = dalify(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)))
    probe = WeightProbeMetric()
    strategy = SimpleNamespace(model=model, optimizer=None)
    probe.before_training(strategy)
    first = probe._scalars(strategy)
    rows = {name: probe._rows[name][3] for name in ("0", "2")}
    model[2].weight.data[:, :8] = 0.0  # half the readout's synapses gone, no version bump
    second = probe._scalars(strategy)
    assert probe._rows["0"][3] is rows["0"]  # unchanged: reused
    assert probe._rows["2"][3] is not rows["2"]
    with torch.no_grad():
        model[0].dale_sign[0] = -model[0].dale_sign[0]  # same weights, another type: measured
    third = probe._scalars(strategy)
    assert probe._rows["0"][3] is not rows["0"]
    assert third["probe/weights/0/dale_violations"] == 1
    expected = P.weight_report(model, {k: v for k, v in probe.reference.items()})
    assert second["probe/weights/2/connectivity"] == expected["2"]["connectivity"] == 0.5
    assert second["probe/weights/0/log_mag_mean"] == first["probe/weights/0/log_mag_mean"]
    assert second["probe/weights/connectivity"] < first["probe/weights/connectivity"]
    assert "_rows" not in probe.__getstate__() and "reference" in probe.__getstate__()


def test_dale_violations_read_a_multi_head_models_heads_together(task_bm):
    """A hidden unit that excites one head and inhibits another breaks Dale's law though each
    head alone is fine; the whole-model count (probes' total, stream summaries) sees it."""
    from avalanche.models.utils import avalanche_model_adaptation

    from bioplastic import dalify
    from bioplastic import probes as P
    from strategies.avalanche.metrics import unit_dale_violations

    torch.manual_seed(0)
    model = MultiHeadMLP(64, 2, hidden=(8,))
    for exp in task_bm.train_stream[:2]:
        avalanche_model_adaptation(model, exp)
    dalify(model)  # each layer's own random types: the two heads disagree on some units
    heads = [model.heads.classifiers[k].classifier for k in ("0", "1")]
    assert sum(P.dale_violations(h) for h in heads) == 0
    disagree = int((heads[0].dale_sign != heads[1].dale_sign).sum())
    assert disagree > 0
    assert unit_dale_violations(model) == disagree + P.dale_violations(model.trunk[1])
    with torch.no_grad():
        heads[1].dale_sign.copy_(heads[0].dale_sign)  # one type per unit ...
        heads[1].weight.abs_().mul_(heads[0].dale_sign)  # ... and weights that follow it
    assert unit_dale_violations(model) == 0
    with torch.no_grad():
        heads[1].weight[0, 3] = -heads[1].weight[0, 3]  # one synapse against its type
    assert unit_dale_violations(model) == 1
