"""What the crd_cifar100 recipe costs: measured here, extrapolated to the full protocol.

For each of the recipe's 13 pairs (CIFAR-100, 32 px, batch 64) this counts the FLOPs of
one KD training step (teacher forward + student forward and backward, torch's
FlopCounterMode) and times that step on this CPU (median of a few). It then scales both
to the recipe: 240 epochs x 782 steps per cell, 14 methods per pair, teachers trained
once per pair. The GPU column divides the FLOPs by an *assumed* sustained throughput
(--gpu-tflops, default 10 TFLOP/s fp32, a V100/A10-class card at ~60% use); it is an
estimate, not a measurement. Methods differ in cost by a few percent (a connector, a
memory bank); the estimate charges every cell the plain KD step.

    cd benchmarks && PYTHONPATH=. ../.venv/bin/python crd_cost.py   # writes recipes/crd_cifar100/cost.md
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch.utils.flop_counter import FlopCounterMode

from kdrun.models.registry import create_model

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "crd_cifar100"
EXPERIMENT = Path(__file__).resolve().parent.parent / "conf" / "experiment" / "crd_cifar100.yaml"
TRAIN_IMAGES, CLASSES, BATCH, EPOCHS = 50_000, 100, 64, 240


def recipe_grid() -> tuple[list[tuple[str, str]], int]:
    """The (teacher, student) pairs and the number of methods, read from the recipe."""
    params = OmegaConf.load(EXPERIMENT).hydra.sweeper.params
    pairs = [tuple(p.strip().split("-", 1)) for p in str(params.pair).split(",")]
    methods = [m for m in str(params.loss).split(",") if m.strip()]
    return pairs, len(methods)


def kd_step(teacher, student, optimizer, x, y) -> None:
    with torch.no_grad():
        t = teacher(x).logits
    s = student(x).logits
    loss = F.cross_entropy(s, y) + F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1),
                                            reduction="batchmean") * 16
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def teacher_step(teacher, optimizer, x, y) -> None:
    loss = F.cross_entropy(teacher(x).logits, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(pairs, repeats: int) -> list[dict]:
    torch.manual_seed(0)
    x = torch.randn(BATCH, 3, 32, 32)
    y = torch.randint(0, CLASSES, (BATCH,))
    rows, teachers = [], {}
    for teacher_name, student_name in pairs:
        teacher = create_model(teacher_name, num_classes=CLASSES).train()
        student = create_model(student_name, num_classes=CLASSES).train()
        if teacher_name not in teachers:
            t_opt = torch.optim.SGD(teacher.parameters(), lr=0.05, momentum=0.9)
            step = lambda: teacher_step(teacher, t_opt, x, y)  # noqa: E731
            teachers[teacher_name] = {"flops": flops(step), "s": seconds(step, repeats)}
        s_opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9)
        teacher.eval()
        step = lambda: kd_step(teacher, student, s_opt, x, y)  # noqa: E731
        rows.append({"teacher": teacher_name, "student": student_name,
                     "kd_flops": flops(step), "kd_s": seconds(step, repeats),
                     "teacher_flops": teachers[teacher_name]["flops"],
                     "teacher_s": teachers[teacher_name]["s"]})
        print(f"{teacher_name} -> {student_name}: KD step {rows[-1]['kd_s'] * 1e3:.0f} ms, "
              f"{rows[-1]['kd_flops'] / 1e9:.1f} GFLOP", flush=True)
    return rows


def render(rows, methods: int, gpu_tflops: float) -> str:
    steps = EPOCHS * math.ceil(TRAIN_IMAGES / BATCH)
    lines = [
        "# What crd_cifar100 costs",
        "",
        f"Written by `benchmarks/crd_cost.py` on this machine ({torch.get_num_threads()} CPU threads, "
        f"torch {torch.__version__}). One KD step = batch {BATCH} at 32 px, teacher forward "
        "(eval, no grad) + student forward/backward + SGD step; FLOPs counted by torch's "
        "FlopCounterMode, CPU time the median of measured steps. A cell is "
        f"{EPOCHS} epochs x {math.ceil(TRAIN_IMAGES / BATCH)} steps = {steps:,} steps; a pair has "
        f"{methods} method cells and one teacher (trained once, cached).",
        "",
        f"GPU hours are an estimate and a lower bound: FLOPs / {gpu_tflops:g} TFLOP/s sustained "
        "(assumed, not measured; small CIFAR models rarely keep a GPU that busy, and data "
        "loading is not counted, so real runs take longer).",
        "",
        "| teacher | student | KD step GFLOP | KD step CPU ms | CPU h / cell | GPU h / cell (est.) |",
        "|---|---|---:|---:|---:|---:|",
    ]
    cpu_total = gpu_total = 0.0
    seen = set()
    for r in rows:
        cpu_h = r["kd_s"] * steps / 3600
        gpu_h = r["kd_flops"] * steps / (gpu_tflops * 1e12) / 3600
        cpu_total += cpu_h * methods
        gpu_total += gpu_h * methods
        if r["teacher"] not in seen:
            seen.add(r["teacher"])
            cpu_total += r["teacher_s"] * steps / 3600
            gpu_total += r["teacher_flops"] * steps / (gpu_tflops * 1e12) / 3600
        lines.append(f"| {r['teacher']} | {r['student']} | {r['kd_flops'] / 1e9:.1f} | "
                     f"{r['kd_s'] * 1e3:.0f} | {cpu_h:.1f} | {gpu_h:.2f} |")
    cells = len(rows) * methods
    lines += [
        "",
        f"**Whole table** ({cells} cells + {len(seen)} teachers, one seed): about "
        f"{cpu_total:,.0f} CPU hours on this 2-core machine (~{cpu_total / 24:,.0f} days), "
        f"at least {gpu_total:,.0f} GPU hours at the assumed throughput. Three seeds triple it. "
        "This is why the recipe is not run here; `survey_cpu` is the reduced table that is.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--gpu-tflops", type=float, default=10.0)
    parser.add_argument("--out", type=Path, default=RECIPE / "cost.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pairs, methods = recipe_grid()
    args.out.write_text(render(measure(pairs, args.repeats), methods, args.gpu_tflops))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
