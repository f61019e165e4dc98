"""Token-level KD step times for task=lm (benchmarks 7-10), measured side by side in one run.

7. kdrun's LM-KD step / a hand-written PyTorch + transformers step, live teacher
   (SmolLM2-135M in bf16 run inside the step in both arms)                 (target <= 1.05)
8. the same with the teacher served from kdrun's top-k cache (k=64); the hand-written arm reads
   the same top-k arrays and rebuilds the dense distribution the same way    (target <= 1.05)
9. kdrun's KD step with a live teacher / with the cached teacher, and the one-time cost of
   filling the cache (per 1k tokens)
10. kdrun's KD step / its CE-only step (cached and live)                      (reference)

The job, the same in every arm: Jane Austen (data=austen, SmolLM2 tokenizer, vocab 49152)
batches of 8 x 64 tokens from kdrun's text data module (each arm iterates its own copy of the
same shuffled training loader, so all arms see the same batches in the same order); the student
lm_tiny built once under seed 0 and deep-copied into each arm; AdamW lr 1e-3 (kdrun's adamw:
weight decay 0.05); loss = (1 - alpha) * CE + alpha * T^2 * KL(p_t || p_s) per token with T=1,
alpha=0.5. The kdrun arms build the objective the way the engine does (config composed as the
CLI does, losses from kdrun.losses.build_losses on probe outputs, the objective from the lm
task's `objective`, the cached teacher from its `serve_teacher`) and run kdrun's real
engine.loop.train_epoch, task.train_sums included. The hand-written arms call the Hugging Face
modules directly (`hf(input_ids=...).logits`), F.cross_entropy and F.kl_div on log_softmax.

kdrun is imported first, so THP_MEM_ALLOC_ENABLE=1 (kdrun/__init__.py) holds for every arm.
All five arms (kdrun live, kdrun cached, kdrun CE-only, hand live, hand cached) run in one
process: 2 untimed warm-up rounds in lockstep (after which the kdrun and hand-written arms must
agree on the loss and the parameters: `checks` in the JSON), then `--rounds` rounds of one
`--steps`-step chunk per arm in a shuffled order (common.interleave); each figure is the median
of the per-round ratios with its IQR, and the 1-minute load average is read after every round.
One torch thread by default (`--threads`, README.md says why).
"""

from __future__ import annotations

import argparse
import copy
import datetime
import hashlib
import math
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import kdrun  # noqa: F401  sets THP_MEM_ALLOC_ENABLE=1 before any tensor exists (every arm)
import numpy as np
import torch
import torch.nn.functional as F
from kdrun.engine.assemble import probe
from kdrun.engine.loop import StepSettings, train_epoch
from kdrun.engine.optim import build_optimizer
from kdrun.losses import build_losses, ce_weight
from kdrun.models.build import build_model
from kdrun.models.frozen import FrozenTeacher
from kdrun.tasks import task_for

from common import ChunkData, Chunks, interleave, ratio_stats, write_result
from helpers_compose import compose


def loadavg() -> list[float]:
    return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]


# the kdrun files a step of this benchmark runs through (their content hashes go in the JSON:
# kdrun/ is edited while benchmarks run, so a figure names the code it measured)
STEP_FILES = ("kdrun/tasks/lm.py", "kdrun/engine/token_objective.py", "kdrun/engine/distiller.py",
              "kdrun/engine/loop.py", "kdrun/losses/response/kd.py", "kdrun/losses/tokens.py",
              "kdrun/cache/token_outputs.py", "kdrun/models/lm.py", "kdrun/models/frozen.py")


def source_identity() -> dict[str, object]:
    repo = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = None
    files = {f: hashlib.sha256((repo / f).read_bytes()).hexdigest()[:12]
             for f in STEP_FILES if (repo / f).is_file()}
    return {"git_head": head, "sha256_12": files}


def epoch_chunks(loader, steps: int) -> Chunks:
    """`steps` batches per call; the loader reshuffles from epoch 1 on at each rollover."""
    return Chunks(loader, steps, on_epoch=lambda epoch: loader.set_epoch(epoch + 1))


def kdrun_arm(objective, loader, steps, optim_cfg, task):
    """kdrun's train_epoch over the next `steps` batches; `.last` keeps the epoch record."""
    data = ChunkData(epoch_chunks(loader, steps))
    optimizer = build_optimizer(objective.parameters(), optim_cfg)
    settings = StepSettings(objective, "off", torch.amp.GradScaler("cpu", enabled=False), False, None)
    device = torch.device("cpu")

    def run():
        run.last = train_epoch(objective, settings, data, optimizer, 0, 1, device, False, "bench",
                               False, task)
    run.last = None
    return run


class HandArm:
    """The loop a user would write around the same Hugging Face student, teacher and batches."""

    def __init__(self, student_hf, teacher, loader, steps, optim_cfg, temperature, alpha):
        self.student, self.teacher = student_hf, teacher
        self.chunks = epoch_chunks(loader, steps)
        self.optimizer = torch.optim.AdamW(student_hf.parameters(), lr=optim_cfg.lr,
                                           weight_decay=optim_cfg.weight_decay)
        self.temperature, self.alpha = temperature, alpha
        self.steps: list[dict] = []  # the last chunk's terms, for the agreement check

    def __call__(self):
        T, alpha = self.temperature, self.alpha
        self.student.train()
        self.steps = []
        for batch in self.chunks:
            with torch.no_grad():
                t = self.teacher(batch).flatten(0, 1).float()
            s = self.student(input_ids=batch.x, use_cache=False).logits.flatten(0, 1)
            ce = F.cross_entropy(s, batch.y.flatten())  # austen packs documents: every token scored
            kd = F.kl_div(F.log_softmax(s / T, -1), F.log_softmax(t / T, -1), reduction="batchmean",
                          log_target=True) * T**2
            loss = (1 - alpha) * ce + alpha * kd
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.steps.append({"loss": loss.detach(), "ce": ((1 - alpha) * ce).detach(),
                               "kd": (alpha * kd).detach()})


def live_logits(teacher_hf):
    teacher_hf.eval().requires_grad_(False)
    return lambda batch: teacher_hf(input_ids=batch.x, use_cache=False).logits


class TopKLogits:
    """The cache entry's top-k arrays (values, indices, rest) read by sequence index, the
    (B, T, V) log-probabilities rebuilt as kdrun's cache documents it: the kept k exact, the
    rest mass spread evenly over the other V - k tokens."""

    def __init__(self, entry: Path, vocab: int):
        self.vocab = vocab
        self.values, self.indices, self.rest = (np.load(entry / f"{f}.npy", mmap_mode="r")
                                                for f in ("values", "indices", "rest"))

    def __call__(self, batch):
        rows = batch.index.numpy()
        values = torch.from_numpy(self.values[rows].astype(np.float32))
        indices = torch.from_numpy(self.indices[rows].astype(np.int64))
        rest = torch.from_numpy(self.rest[rows].astype(np.float32))
        fill = rest - math.log(self.vocab - values.shape[-1])
        dense = fill.unsqueeze(-1).expand(*fill.shape, self.vocab).clone()
        return dense.scatter_(-1, indices, values)


def spread_ms(times: list[float], steps: int) -> dict[str, float]:
    ms = sorted(1000 * t / steps for t in times)
    q = statistics.quantiles(ms, n=4) if len(ms) >= 2 else [ms[0]] * 3
    return {"median": statistics.median(ms), "q1": q[0], "q3": q[2], "min": ms[0], "max": ms[-1]}


def agreement(kdrun_run, hand: HandArm, kdrun_student, hand_student) -> dict[str, float]:
    """After the lockstep warm-up: the last chunk's mean terms (train_epoch's record) and the
    parameters, kdrun vs hand."""
    record = kdrun_run.last
    k = {"loss": record["loss"], "ce": record["loss/ce"], "kd": record["loss/kd"]}
    h = {name: statistics.fmean(float(step[name]) for step in hand.steps) for name in k}
    a, b = kdrun_student.state_dict(), hand_student.state_dict()
    return {**{f"kdrun_{n}": k[n] for n in k}, **{f"hand_{n}": h[n] for n in h},
            "max_rel_loss_diff": max(abs(k[n] - h[n]) / max(abs(h[n]), 1e-12) for n in k),
            "max_abs_param_diff": max((a[n] - b[n]).abs().max().item() for n in b)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (one chunk per arm each)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed lockstep rounds first")
    parser.add_argument("--steps", type=int, default=2, help="steps per chunk")
    parser.add_argument("--train-seqs", type=int, default=64,
                        help="data.max_train: training sequences (all cached by the fill)")
    parser.add_argument("--topk", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default). 1 because the 2 cores are "
                             "shared: with other jobs running, 2 threads per process made every arm "
                             "2.5-4x slower and its step times 5-7x more spread (README.md)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    started, load_start = time.perf_counter(), loadavg()
    source = source_identity()  # before the run: what it measures
    temperature, alpha = 1.0, 0.5
    cpu = torch.device("cpu")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # pinned, not left to conf/task/lm.yaml's defaults (which change): the benchmark's job
        job = ["task=lm", "data=austen", "data.batch_size=8", "data.seq_len=64",
               f"data.max_train={args.train_seqs}", "student=lm_tiny", "teacher=smollm2",
               "optim=adamw", "optim.lr=1e-3", "optim.weight_decay=0.05", "logger=none"]
        cfg = compose([*job, "loss=kd", f"loss.kd.temperature={temperature}",
                       f"loss.kd.alpha={alpha}", f"task.cache_topk={args.topk}"], root)
        task = task_for(cfg.task.name)
        data = task.build_data(cfg.data, cfg.seed)
        vocab = data.vocab_size
        torch.manual_seed(cfg.seed)
        student0 = build_model(cfg.student, "student", vocab, 1)
        teacher = build_model(cfg.teacher, "teacher", vocab, 1)  # SmolLM2, bf16 (kdrun's default)
        frozen = FrozenTeacher(teacher, cfg.teacher.name)
        teacher_dtype = str(next(teacher.parameters()).dtype).removeprefix("torch.")
        losses0 = build_losses(cfg.loss, probe(student0, data), probe(teacher, data))
        weight = ce_weight(cfg.loss)

        # the top-k cache, filled once through the task (what a cell does on its first run)
        cell = SimpleNamespace(cfg=cfg, data=data, cache_dir=root / "cache", device=cpu)
        record = SimpleNamespace(key=f"bench-lm-{cfg.teacher.name}-{teacher_dtype}", path=None)
        fill_load = loadavg()
        t0 = time.perf_counter()
        cached = task.serve_teacher(frozen, record, cell, live=False)
        fill_s = time.perf_counter() - t0
        fill_tokens = data.train.num_samples * data.seq_len
        fill = {"seconds": fill_s, "sequences": data.train.num_samples, "tokens": fill_tokens,
                "s_per_1k_tokens": 1000 * fill_s / fill_tokens,
                "eval_batch_size": cfg.data.eval_batch_size,
                "bytes": sum(p.stat().st_size for p in cached.entry.glob("*.npy")),
                "loadavg_before": fill_load, "loadavg_after": loadavg()}
        print(f"cache fill: {fill_s:.1f} s for {fill_tokens} tokens = {fill['s_per_1k_tokens']:.2f} "
              f"s per 1k tokens (load {fill_load[0]:.2f} -> {fill['loadavg_after'][0]:.2f})")

        # the CE-only reference: loss=ce, the engine's label CE and no teacher
        cfg_ce = compose([*job, "loss=ce"], root)
        cell_ce = SimpleNamespace(cfg=cfg_ce, data=data, cache_dir=root / "cache", device=cpu)

        def objective(teacher_served, kd: bool):
            if not kd:
                losses = build_losses(cfg_ce.loss, probe(student0, data), None)
                return task.objective(cell_ce, copy.deepcopy(student0), losses, None,
                                      ce_weight(cfg_ce.loss))
            teaching = SimpleNamespace(teacher=teacher_served, model=teacher, result={})
            return task.objective(cell, copy.deepcopy(student0), copy.deepcopy(losses0), teaching,
                                  weight)

        def loader():
            return copy.copy(data.train)

        objectives = {"kdrun_live": objective(frozen, True), "kdrun_cached": objective(cached, True),
                      "ce": objective(None, False)}
        hand_students = {m: copy.deepcopy(student0.hf) for m in ("live", "cached")}
        teachers = {"live": live_logits(teacher.hf), "cached": TopKLogits(cached.entry, vocab)}
        arms = {name: kdrun_arm(obj, loader(), args.steps, cfg.optim, task)
                for name, obj in objectives.items()}
        for mode in ("live", "cached"):
            arms[f"hand_{mode}"] = HandArm(hand_students[mode], teachers[mode], loader(), args.steps,
                                           cfg.optim, temperature, alpha)

        for _ in range(args.warmup):  # in lockstep: every arm takes the same batches
            for arm in arms.values():
                arm()
        checks = {mode: agreement(arms[f"kdrun_{mode}"], arms[f"hand_{mode}"],
                                  objectives[f"kdrun_{mode}"].student.hf, hand_students[mode])
                  for mode in ("live", "cached")}
        times: dict[str, list[float]] = {name: [] for name in arms}
        round_load = []
        for r in range(args.rounds):
            for name, t in interleave(arms, 1, seed=r).items():
                times[name].extend(t)
            round_load.append(loadavg()[0])
            print(f"round {r + 1}/{args.rounds}: " + " ".join(
                f"{n} {1000 * times[n][-1] / args.steps:.0f}" for n in arms) + f" ms; load {round_load[-1]:.2f}")

    ratios = {
        "kdrun_over_hand_live": ratio_stats(times["kdrun_live"], times["hand_live"]),
        "kdrun_over_hand_cached": ratio_stats(times["kdrun_cached"], times["hand_cached"]),
        "live_over_cached": ratio_stats(times["kdrun_live"], times["kdrun_cached"]),
        "kd_cached_over_ce": ratio_stats(times["kdrun_cached"], times["ce"]),
        "kd_live_over_ce": ratio_stats(times["kdrun_live"], times["ce"]),
    }
    step_ms = {name: spread_ms(t, args.steps) for name, t in times.items()}
    saved_per_epoch_s = (step_ms["kdrun_live"]["median"] - step_ms["kdrun_cached"]["median"]) \
        / 1000 * len(data.train)
    fill["break_even_epochs"] = fill_s / saved_per_epoch_s if saved_per_epoch_s > 0 else None
    targets = {"kdrun_over_hand_live": 1.05, "kdrun_over_hand_cached": 1.05}
    load_end = loadavg()
    path = write_result("lm", {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "settings": {"data": cfg.data.name, "tokenizer": cfg.data.tokenizer, "vocab": vocab,
                     "batch_size": cfg.data.batch_size, "seq_len": data.seq_len,
                     "train_sequences": data.train.num_samples, "student": cfg.student.name,
                     "student_attention": student0.hf.config._attn_implementation,
                     "teacher": cfg.teacher.name, "teacher_dtype": teacher_dtype,
                     "teacher_attention": teacher.hf.config._attn_implementation,
                     "topk": args.topk, "temperature": temperature, "alpha": alpha,
                     "optimizer": {"name": cfg.optim.name, "lr": cfg.optim.lr,
                                   "weight_decay": cfg.optim.weight_decay},
                     "rounds": args.rounds, "warmup_rounds": args.warmup,
                     "steps_per_chunk": args.steps, "torch_threads": torch.get_num_threads(),
                     "nproc": os.cpu_count(),
                     "THP_MEM_ALLOC_ENABLE": os.environ.get("THP_MEM_ALLOC_ENABLE")},
        "ratios": ratios, "targets": targets, "median_step_ms": step_ms, "cache_fill": fill,
        "checks": checks, "kdrun_source": source,
        "loadavg": {"start": load_start, "end": load_end, "per_round_1min": round_load},
        "wall_s": time.perf_counter() - started,
    })
    for name, stats in ratios.items():
        target = f" (target <= {targets[name]})" if name in targets else ""
        print(f"{name}: {stats['median']:.3f} [IQR {stats['q1']:.3f}-{stats['q3']:.3f}]{target}")
    for name, s in step_ms.items():
        print(f"  {name}: {s['median']:.0f} ms/step [IQR {s['q1']:.0f}-{s['q3']:.0f}]")
    for mode, c in checks.items():
        print(f"  check {mode}: loss kdrun {c['kdrun_loss']:.6f} vs hand {c['hand_loss']:.6f}, "
              f"max param diff {c['max_abs_param_diff']:.2e}")
    print(f"load average {load_start[0]:.2f} -> {load_end[0]:.2f}; torch threads "
          f"{torch.get_num_threads()}; {time.perf_counter() - started:.0f} s")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
