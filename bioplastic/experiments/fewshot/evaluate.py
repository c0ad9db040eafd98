"""Evaluation of the few-shot benchmark: seeded meta-test episodes, prototype and fine-tune
accuracies of a backbone, and the accuracy and paired-difference tables."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bioplastic._progress import Stages, bar
from strategies.fewshot.finetune import finetune_readout_features
from strategies.fewshot.proto import ProtoEvaluator, embed, mean_ci
from strategies.fewshot.tasksets import episode_classes, episodes_digest, index_episodes


def _draw_episodes(data, ways, shots, queries, episodes, seed, sampler, device, test_classes):
    """Per shot count, the seed's meta-test episodes (as indices, and with their tensors on
    ``device``) and their digests."""
    episode_sets, device_sets, digests = {}, {}, {}
    for k in shots:
        eps = index_episodes(data.test_y, ways, k, queries, episodes, seed, sampler)
        for episode in eps:  # the meta-test side only (FewShotData checked the names)
            if not episode_classes(episode, data.test_y) <= test_classes:
                raise RuntimeError("an episode drew a class outside meta-test")
        episode_sets[k] = eps
        device_sets[k] = [tuple(t.to(device) for t in episode) for episode in eps]
        digests[str(k)] = episodes_digest(eps)
    return episode_sets, device_sets, digests


def readout_inputs(readout, feats: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
    """What a fine-tuned readout reads, and the presynaptic types: the features, or for an
    inhibited readout (:class:`~bioplastic.inhibition.InhibitedLinear`) the features (all
    excitatory) and its frozen interneurons' activity (inhibitory), as its ``principal`` does."""
    if not hasattr(readout, "interneurons"):
        return feats, getattr(readout, "dale_sign", None)
    if feats is not None:
        with torch.no_grad():
            feats = readout.principal_inputs(feats)
    return feats, readout.principal.dale_sign


def _evaluate_backbone(
    features, readout, rule, seed, methods, shots, test_x, episode_sets, device_sets,
    finetune_steps, finetune_lr, record, proto_times, stages=None,
) -> None:  # fmt: skip
    """Prototype and fine-tune evaluation of one pre-trained backbone on every shot count;
    their wall times are added to ``stages`` (a :class:`bioplastic._progress.Stages`)."""
    stages = Stages() if stages is None else stages
    feats = embed(features, test_x) if "finetune" in methods else None
    feats, dale_sign = readout_inputs(readout, feats)
    for k in shots:
        eps, dev_eps = episode_sets[k], device_sets[k]
        if "proto" in methods:
            t0 = time.perf_counter()
            result = ProtoEvaluator(features).evaluate_indexed(test_x, dev_eps)
            proto_times.append(time.perf_counter() - t0)
            stages.add("proto", proto_times[-1])
            record("proto", k, rule, seed, result["accuracies"], eps)
        if "finetune" in methods:
            t0 = time.perf_counter()
            accs = [
                finetune_readout_features(
                    feats[s], sy, feats[q], qy, rule=rule, steps=finetune_steps,
                    lr=finetune_lr, seed=seed * 100_003 + i,
                    dale_sign=dale_sign if rule in ("bio", "eg") else None,
                )
                for i, (s, sy, q, qy) in enumerate(
                    bar(dev_eps, desc=f"fine-tune {rule} {k}-shot", unit="episode")
                )
            ]  # fmt: skip
            stages.add("finetune", time.perf_counter() - t0)
            record("finetune", k, rule, seed, accs, eps)


def _accuracy_rows(acc, used, methods, shots, rules) -> list[dict[str, Any]]:
    rows = []
    for method in methods:
        for k in shots:
            for rule in rules:
                per_seed = acc.get((method, k, rule))
                if not per_seed:
                    continue
                pooled = [a for seed in sorted(per_seed) for a in per_seed[seed]]
                stats = mean_ci(pooled)
                rows.append(
                    {
                        "method": method,
                        "shots": k,
                        "rule": rule,
                        "mean": stats["mean"],
                        "ci95": stats["ci95"],
                        "n": stats["n"],
                        "seed_means": [float(np.mean(per_seed[s])) for s in sorted(per_seed)],
                        "episode_digests": [used[(method, k, rule)][s] for s in sorted(per_seed)],
                    }
                )
    return rows


def _paired_rows(acc, methods, shots, rules) -> list[dict[str, Any]]:
    rows = []
    if "bio" not in rules:
        return rows
    for method in methods:
        for k in shots:
            bio = acc.get((method, k, "bio"))
            if not bio:
                continue
            for rule in rules:
                other = acc.get((method, k, rule))
                if rule == "bio" or not other:
                    continue
                seeds = sorted(set(bio) & set(other))
                diffs = [b - o for s in seeds for b, o in zip(bio[s], other[s], strict=True)]
                stats = mean_ci(diffs)
                rows.append(
                    {
                        "method": method,
                        "shots": k,
                        "rule": "bio",
                        "baseline": rule,
                        "mean_diff": stats["mean"],
                        "ci95": stats["ci95"],
                        "n": stats["n"],
                        "seed_diffs": [float(np.mean(bio[s]) - np.mean(other[s])) for s in seeds],
                    }
                )
    return rows
