"""Partitions of the train split: who (client, teacher) sees which training samples.

Data-partitioned and federated distillation (Alballa & Canini 2024; McMahan et al.
2017; Lin et al. 2020) train models on disjoint parts of the training data, IID or
label-skewed. Only the train split is divided (val and test stay whole); every
part is a sorted array of positions into the train split, so batches keep the
split's `index` (teacher-output cache, CRD). The draw depends only on the train
labels, the data.partition* settings and `seed`.

    iid        a seeded permutation cut into num_partitions near-equal parts
    dirichlet  per class, proportions q ~ Dir(beta * 1) over parts (Hsu et al. 2019,
               as in FedDF); small beta = strong label skew; redrawn until every part
               has at least MIN_PART_SIZE samples (or as many as the data allows)
    shards     labels sorted into num_partitions * shards_per_partition shards, each part
               gets shards_per_partition of them (McMahan et al.'s pathological non-IID)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kdrun.config.bounds import declared_bounds
from kdrun.config.errors import ConfigError
from kdrun.data.config import DataConfig
from kdrun.data.seeds import numpy_rng
from kdrun.data.splits import hold_out

SCHEMES = ("none", "iid", "dirichlet", "shards")
FIELDS = ("partition", "num_partitions", "dirichlet_beta", "shards_per_partition")
MIN_PART_SIZE = 10
DIRICHLET_TRIES = 100


def check_partition_config(cfg: Any) -> None:
    """Fail on a bad data.partition* value, naming the key and the fix."""
    if cfg.partition not in SCHEMES:
        raise ConfigError(f"data.partition={cfg.partition}: use one of {', '.join(SCHEMES)}")
    bounds = declared_bounds(DataConfig)  # also for callers that hold these fields alone
    for key in FIELDS[1:]:
        bounds[key].check(f"data.{key}", getattr(cfg, key))


def iid_split(n: int, parts: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [np.sort(p) for p in np.array_split(rng.permutation(n), parts)]


def dirichlet_split(labels: np.ndarray, parts: int, beta: float,
                    rng: np.random.Generator) -> list[np.ndarray]:
    """Per-class Dirichlet label skew; redraws until every part is big enough."""
    labels = np.asarray(labels)
    need = max(1, min(MIN_PART_SIZE, len(labels) // (2 * parts)))
    for _ in range(DIRICHLET_TRIES):
        chosen: list[list[np.ndarray]] = [[] for _ in range(parts)]
        for c in np.unique(labels):
            idx = rng.permutation(np.flatnonzero(labels == c))
            q = rng.dirichlet(np.full(parts, beta))
            cuts = (np.cumsum(q)[:-1] * len(idx)).astype(np.int64)
            for k, chunk in enumerate(np.split(idx, cuts)):
                chosen[k].append(chunk)
        result = [np.sort(np.concatenate(c)) for c in chosen]
        if min(len(r) for r in result) >= need:
            return result
    raise ConfigError(f"data.dirichlet_beta={beta}: {DIRICHLET_TRIES} draws left a part with fewer "
                     f"than {need} samples; raise data.dirichlet_beta, lower data.num_partitions "
                     "or use more data")


def shard_split(labels: np.ndarray, parts: int, shards_per_part: int,
                rng: np.random.Generator) -> list[np.ndarray]:
    """Label-sorted shards (ties broken at random), shards_per_part random shards per part."""
    labels = np.asarray(labels)
    shuffled = rng.permutation(len(labels))
    order = shuffled[np.argsort(labels[shuffled], kind="stable")]
    shards = np.array_split(order, parts * shards_per_part)
    deal = rng.permutation(len(shards)).reshape(parts, shards_per_part)
    return [np.sort(np.concatenate([shards[s] for s in row])) for row in deal]


@dataclass(frozen=True)
class Partitions:
    """parts[i]: sorted train-split positions of part i; public: positions held out of every
    part (FedDF's public split), or None."""

    scheme: str
    parts: list[np.ndarray]
    public: np.ndarray | None = None


def make_partitions(cfg: Any, labels: np.ndarray, seed: int, public_fraction: float = 0.0,
                    scheme: str | None = None) -> Partitions:
    """The parts of the train split for data config `cfg` (scheme overrides cfg.partition)."""
    check_partition_config(cfg)
    scheme = scheme or cfg.partition
    if scheme == "none":
        raise ConfigError("data.partition=none: set data.partition=iid|dirichlet|shards to split "
                         "the training data")
    labels = np.asarray(labels)
    pool, public = np.arange(len(labels)), None
    if public_fraction > 0:
        pool, public = hold_out(labels, public_fraction, numpy_rng(seed, "public"))
    if len(pool) < cfg.num_partitions:
        raise ConfigError(f"data.num_partitions={cfg.num_partitions} exceeds the {len(pool)} training "
                         "samples to split: lower it or use more data")
    rng = numpy_rng(seed, "partition")
    if scheme == "iid":
        local = iid_split(len(pool), cfg.num_partitions, rng)
    elif scheme == "dirichlet":
        local = dirichlet_split(labels[pool], cfg.num_partitions, cfg.dirichlet_beta, rng)
    else:
        local = shard_split(labels[pool], cfg.num_partitions, cfg.shards_per_partition, rng)
    return Partitions(scheme, [pool[p] for p in local], public)


def partition_identity(cfg: Any, index: int) -> dict[str, Any]:
    """What the samples of part `index` depend on (besides the data and seed): a cache key part."""
    identity = {"index": index, "partition": cfg.partition, "num_partitions": cfg.num_partitions}
    if cfg.partition == "dirichlet":
        identity["dirichlet_beta"] = cfg.dirichlet_beta
    if cfg.partition == "shards":
        identity["shards_per_partition"] = cfg.shards_per_partition
    return identity


def class_histogram(labels: np.ndarray, positions: np.ndarray, num_classes: int) -> list[int]:
    return np.bincount(np.asarray(labels)[positions], minlength=num_classes).tolist()


def partition_stats(partitions: Partitions, cfg: Any, labels: np.ndarray, num_classes: int,
                    seed: int) -> dict[str, Any]:
    """What partitions.json records: the settings and, per part, its size and class histogram."""
    stats: dict[str, Any] = {
        "partition": partitions.scheme, "num_partitions": len(partitions.parts), "seed": seed,
        "dirichlet_beta": cfg.dirichlet_beta if partitions.scheme == "dirichlet" else None,
        "shards_per_partition": cfg.shards_per_partition if partitions.scheme == "shards" else None,
        "parts": [{"index": i, "samples": int(len(p)), "classes": class_histogram(labels, p, num_classes)}
                  for i, p in enumerate(partitions.parts)],
    }
    if partitions.public is not None:
        stats["public"] = {"samples": int(len(partitions.public)),
                           "classes": class_histogram(labels, partitions.public, num_classes)}
    return stats


def label_skew(partitions: Partitions, labels: np.ndarray, num_classes: int) -> float:
    """Mean total-variation distance between each part's class distribution and the pool's
    (0 = every part has the pool's label mix; near 1 = parts hold disjoint classes)."""
    hists = np.array([class_histogram(labels, p, num_classes) for p in partitions.parts], float)
    pool = hists.sum(0) / hists.sum()
    mixes = hists / hists.sum(1, keepdims=True)
    return float(0.5 * np.abs(mixes - pool).sum(1).mean())
