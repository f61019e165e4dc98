"""Fingerprints of a fixed set of tiny cells: every number a cell writes, for before/after checks.

A refactor that must not change behaviour (issue 12, the one-cell builder) runs this on the
old and the new tree and compares: result.json's numeric keys and every metrics*.jsonl line
(times dropped) must agree exactly on CPU with one thread.

    python cell_fingerprints.py out.json               # run every cell, write the fingerprints
    python cell_fingerprints.py --compare a.json b.json   # list every difference
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

TINY = ["teacher=resnet8", "student=resnet8", "data.max_train=120", "data.max_val=40",
        "data.max_test=40", "data.batch_size=32", "trainer.epochs=2", "teacher.train.epochs=1",
        "logger=none", "trainer.progress=false"]
SMALL_DF = ["algorithm=data_free", "algorithm.steps_per_epoch=3", "algorithm.batch_size=16",
            "algorithm.inversion_samples=24", "algorithm.inversion_batch=12",
            "algorithm.inversion_iters=4", "algorithm.reference=false", "algorithm.student_steps=2"]
CELLS = {
    "kd": [],
    "at+kd": ["loss=[at,kd]"],
    "ce": ["loss=ce"],
    "crd": ["loss=crd"],
    "fitnet_stage": ["loss=fitnet", "loss.fitnet.hint_epochs=1"],
    "simkd": ["loss=simkd"],
    "output_cache": ["data.augment=false", "teacher.cache=on"],
    "partition_start": ["data.partition=iid", "student.partition=0", "teacher.partition=1"],
    "graph": ["algorithm=graph", "algorithm.mha_epochs=1"],
    "adaptive": ["algorithm=adaptive"],
    "quantized": ["algorithm=quantized", "algorithm.bits=2"],
    "adversarial": ["algorithm=adversarial", "algorithm.branches=[logits,embedding,features.-1]"],
    "multi_teacher": ["algorithm=multi_teacher", "algorithm.teachers=[resnet8,wrn_16_1]",
                      "algorithm.ensemble=weighted", "algorithm.weights=[2,1]", "loss=[sp,kd]",
                      "algorithm.feature_teacher=1"],
    "cross_modal": ["algorithm=cross_modal", "student=signal_cnn", "algorithm.embedding_weight=1"],
    "data_free_dafl": [*SMALL_DF, "algorithm.method=dafl"],
    "data_free_deepinversion": [*SMALL_DF, "algorithm.method=deepinversion"],
    "federated": ["algorithm=federated", "data.max_train=450", "data.image_size=16",
                  "data.partition=iid", "algorithm.server_epochs=1", "algorithm.rounds=2",
                  "loss=kd"],
    "lifelong": ["algorithm=lifelong", "algorithm.tasks=2", "data.image_size=8",
                 "algorithm.batch_size=32", "loss=[kd,sp]"],
    "nas": ["algorithm=nas", "algorithm.family=resnet_cifar", "algorithm.width=2",
            "algorithm.max_params=5000000", "algorithm.latency_repeats=2"],
    "online_dml": ["scheme=online", "loss=[kd,at]"],
    "online_one": ["scheme=online", "scheme.method=one", "scheme.peers=3", "trainer.epochs=1"],
    "self_ban": ["scheme=self", "scheme.generations=1", "loss=[kd,sp]"],
    "self_byot": ["scheme=self", "scheme.method=byot", "loss=[kd,at]", "trainer.epochs=1"],
    "self_tfkd": ["scheme=self", "scheme.method=tfkd", "trainer.epochs=1"],
    "self_cskd": ["scheme=self", "scheme.method=cskd", "loss=[kd,sp]", "loss.kd.alpha=0.5",
                  "trainer.epochs=1"],
}
TIME_KEYS = {"epoch_s", "wall_s", "elapsed_s", "round_s", "latency_ms", "latency"}


def numbers(value, prefix=""):
    """Flatten JSON into {path: number-or-string}, dropping times and paths."""
    out = {}
    if isinstance(value, dict):
        for k, v in value.items():
            if k in TIME_KEYS or k.endswith("_s") or "path" in k or k in ("checkpoint", "error"):
                continue
            out.update(numbers(v, f"{prefix}{k}."))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.update(numbers(v, f"{prefix}{i}."))
    elif isinstance(value, (int, float, str, bool)) or value is None:
        out[prefix.rstrip(".")] = value
    return out


def fingerprint(name: str, overrides: list[str], root: Path) -> dict:
    import torch

    from helpers_compose import compose
    from kdrun.engine.cell import run_cell

    torch.set_num_threads(1)
    cell = root / name
    result = run_cell(compose([*TINY, *overrides], root), cell, [*TINY, *overrides])
    metrics = {p.name: [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
               for p in sorted(cell.glob("metrics*.jsonl"))}
    return {"result": numbers({k: v for k, v in result.items()
                               if k not in ("overrides", "placement")}),
            "metrics": numbers(metrics)}


def compare(a: dict, b: dict) -> list[str]:
    diffs = []
    for cell in sorted(set(a) | set(b)):
        if cell not in a or cell not in b:
            diffs.append(f"{cell}: only in {'b' if cell not in a else 'a'}")
            continue
        for part in ("result", "metrics"):
            x, y = a[cell][part], b[cell][part]
            for key in sorted(set(x) | set(y)):
                u, v = x.get(key, "<absent>"), y.get(key, "<absent>")
                same = u == v or (isinstance(u, float) and isinstance(v, float)
                                  and math.isclose(u, v, rel_tol=0, abs_tol=1e-9))
                if not same:
                    diffs.append(f"{cell} {part} {key}: {u} -> {v}")
    return diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("files", nargs="+")
    parser.add_argument("--compare", action="store_true")
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    if args.compare:
        a, b = (json.loads(Path(f).read_text()) for f in args.files)
        diffs = compare(a, b)
        print("\n".join(diffs) if diffs else f"identical: {len(a)} cells")
        sys.exit(1 if diffs else 0)
    out = {}
    with tempfile.TemporaryDirectory(prefix="kdrun-fp-") as tmp:
        for name, overrides in CELLS.items():
            if args.only and name not in args.only:
                continue
            out[name] = fingerprint(name, overrides, Path(tmp))
            print(f"{name}: student {out[name]['result'].get('student_top1')}", flush=True)
    Path(args.files[0]).write_text(json.dumps(out, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
