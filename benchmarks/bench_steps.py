"""Step-time ratios (benchmarks 1-3), measured side by side in one run.

1. a KD step with cached teacher outputs / a plain ce step        (target <= 1.15)
2. a KD step with a live teacher / a plain ce step                 (for reference)
3. kdrun's KD training step / a hand-written PyTorch loop doing the same work (target <= 1.05)

Every arm runs kdrun's real training loop (engine.loop.train_epoch) on chunks of the
same digits batches (32 px, no augmentation so the output cache is exact), except the
hand-written arm, which is the plain loop a user would write around the same models.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from common import ChunkData, Chunks, interleave, ratio_stats, write_result
from kdrun.cache.outputs import cached_teacher
from kdrun.data import DataConfig, build_data
from kdrun.engine.distiller import Distiller
from kdrun.models.frozen import FrozenTeacher
from kdrun.engine.loop import StepSettings, train_epoch
from kdrun.losses import build_losses
from kdrun.losses.response.kd import KDConfig
from kdrun.models import create_model


def epoch_chunks(loader, steps: int) -> Chunks:
    """`steps` batches per call; the loader reshuffles from epoch 1 on at each rollover."""
    return Chunks(loader, steps, on_epoch=lambda epoch: loader.set_epoch(epoch + 1))


def kdrun_arm(objective, loader, steps):
    data = ChunkData(epoch_chunks(loader, steps))
    optimizer = torch.optim.SGD(objective.parameters(), lr=0.01, momentum=0.9)
    settings = StepSettings(objective, "off", torch.amp.GradScaler("cpu", enabled=False), False, None)
    device = torch.device("cpu")
    return lambda: train_epoch(objective, settings, data, optimizer, 0, 1, device, False, "bench", False)


def handwritten_arm(student, teacher, loader, steps, temperature=4.0, alpha=0.9):
    optimizer = torch.optim.SGD(student.parameters(), lr=0.01, momentum=0.9)
    chunk = epoch_chunks(loader, steps)

    def run():
        student.train()
        for batch in chunk:
            with torch.no_grad():
                t = teacher(batch.x).logits
            s = student(batch.x).logits
            kd = F.kl_div(F.log_softmax(s / temperature, 1), F.log_softmax(t / temperature, 1),
                          reduction="batchmean", log_target=True) * temperature**2
            loss = (1 - alpha) * F.cross_entropy(s, batch.y) + alpha * kd
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--teacher", default="resnet32")
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5, help="steps per chunk")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data_cfg = OmegaConf.structured(DataConfig(name="digits", augment=False, batch_size=64))
    data = build_data(data_cfg, seed=0)
    teacher_model = create_model(args.teacher, num_classes=10, in_chans=1)
    live = FrozenTeacher(teacher_model, args.teacher)
    student0 = create_model(args.student, num_classes=10, in_chans=1)
    probe_x = torch.zeros(2, 1, 32, 32)
    with torch.no_grad():
        s_probe, t_probe = student0.eval()(probe_x), teacher_model(probe_x)
    student0.train()

    def kd_objective(teacher):
        student = copy.deepcopy(student0)
        losses = build_losses({"kd": OmegaConf.structured(KDConfig())}, s_probe, t_probe)
        return Distiller(student, losses, teacher, ce_weight=0.1)

    with tempfile.TemporaryDirectory() as tmp:
        cached = cached_teacher(live, "bench" * 13, Path(tmp), data.train, 1, "cpu")
        loaders = {name: copy.copy(data.train) for name in ("ce", "kd_cached", "kd_live", "handwritten")}
        arms = {
            "ce": kdrun_arm(Distiller(copy.deepcopy(student0)), loaders["ce"], args.steps),
            "kd_cached": kdrun_arm(kd_objective(cached), loaders["kd_cached"], args.steps),
            "kd_live": kdrun_arm(kd_objective(live), loaders["kd_live"], args.steps),
            "handwritten": handwritten_arm(copy.deepcopy(student0), teacher_model,
                                           loaders["handwritten"], args.steps),
        }
        for arm in arms.values():  # warm-up
            arm()
        times = interleave(arms, args.rounds)
    ratios = {
        "kd_cached_over_ce": ratio_stats(times["kd_cached"], times["ce"]),
        "kd_live_over_ce": ratio_stats(times["kd_live"], times["ce"]),
        "kdrun_over_handwritten": ratio_stats(times["kd_live"], times["handwritten"]),
    }
    targets = {"kd_cached_over_ce": 1.15, "kdrun_over_handwritten": 1.05}
    step_ms = {k: 1000 * sorted(v)[len(v) // 2] / args.steps for k, v in times.items()}
    path = write_result("steps", {"teacher": args.teacher, "student": args.student,
                                  "batch_size": 64, "steps_per_chunk": args.steps,
                                  "ratios": ratios, "targets": targets,
                                  "median_step_ms": step_ms})
    for name, stats in ratios.items():
        target = f" (target <= {targets[name]})" if name in targets else ""
        print(f"{name}: {stats['median']:.3f} [IQR {stats['q1']:.3f}-{stats['q3']:.3f}]{target}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
