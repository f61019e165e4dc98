"""Benchmark 5: kdrun vs torchdistill (from PyPI, in its own venv) on the same KD job.

The job: digits at 32 px without augmentation (batch 64), a kdrun zoo teacher trained
once through kdrun's teacher cache, the same student initialisation, Hinton KD with
T=4 and kdrun's alpha=0.9 on the KD term (torchdistill's alpha=0.1 on the CE term),
SGD with the same lr/momentum/weight decay at a constant rate, the same epochs.

1. step-time ratio: kdrun's train_epoch and torchdistill's DistillationBox step
   (forward_process + post_forward_process, in its reference train_one_epoch) run side by
   side in one process, in chunks of --steps steps, shuffled order per round; the figure
   is the median per-round ratio kdrun / torchdistill with its spread.
2. top-1: each arm then trains a fresh student for --epochs epochs (one after the other)
   and is scored on kdrun's test split; wall time of each run is reported.

torchdistill lives in benchmarks/.venv-torchdistill, created on first use: a venv whose
site-packages holds torchdistill (pinned) and its non-torch requirements, plus a .pth
file that puts kdrun's venv site-packages on sys.path, so torch/torchvision are the ones
kdrun uses (nothing downloaded or copied). This script, started with kdrun's python,
makes the venv and re-runs itself there with PYTHONPATH=<repo>:<benchmarks>.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv-torchdistill"
TORCHDISTILL = "1.1.5"            # newest 1.1.x on PyPI when written
HEAVY = ("torch", "torchvision", "torchaudio", "triton")  # must come from kdrun's venv, never pip


# ---------------------------------------------------------------- the torchdistill venv

def _base_version(dist: str) -> str:
    return importlib.metadata.version(dist).split("+")[0]


def venv_python() -> Path:
    return VENV / "bin" / "python"


def ensure_venv() -> Path:
    """Create benchmarks/.venv-torchdistill once; return its python."""
    python = venv_python()
    stamp = VENV / f".installed-torchdistill-{TORCHDISTILL}"
    if stamp.is_file() and python.exists():
        return python
    print(f"creating {VENV} (torchdistill=={TORCHDISTILL}, torch from {ROOT / '.venv'})", flush=True)
    subprocess.check_call([sys.executable, "-m", "venv", "--clear", str(VENV)])
    site = subprocess.check_output(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    ours = sysconfig.get_paths()
    shared = dict.fromkeys([ours["purelib"], ours["platlib"]])  # kdrun's venv site-packages
    # a plain path line: appended after the venv's own site-packages, so what pip puts in
    # this venv wins, and kdrun's torch, numpy, omegaconf... fill in the rest
    Path(site, "kdrun-venv.pth").write_text("".join(f"{p}\n" for p in shared))
    constraints = VENV / "constraints.txt"
    constraints.write_text("".join(f"{d}=={_base_version(d)}\n" for d in ("torch", "torchvision")))
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
           "-c", str(constraints), f"torchdistill=={TORCHDISTILL}"]
    report = VENV / "pip-report.json"
    subprocess.check_call(pip + ["--dry-run", "--report", str(report)])
    planned = sorted(item["metadata"]["name"] for item in json.loads(report.read_text())["install"])
    heavy = [n for n in planned if n.lower() in HEAVY or n.lower().startswith(("nvidia-", "cuda-"))]
    if heavy:
        raise SystemExit(f"pip would install {heavy} into {VENV} instead of using kdrun's; "
                         f"check {ROOT / '.venv'} has torch/torchvision ({constraints})")
    subprocess.check_call(pip)
    stamp.write_text(json.dumps({"installed": planned, "shared_site_packages": list(shared)}) + "\n")
    return python


def in_torchdistill_env() -> bool:
    try:
        return (importlib.util.find_spec("kdrun") is not None
                and importlib.metadata.version("torchdistill") == TORCHDISTILL)
    except importlib.metadata.PackageNotFoundError:
        return False


# ---------------------------------------------------------------- the benchmark

def epoch_orders(loader, epochs: int) -> list[list[int]]:
    """The sample order kdrun's training loader gives in epochs 0..epochs-1 (drop_last applied)."""
    import copy

    import torch

    loader = copy.copy(loader)
    orders = []
    for epoch in range(epochs):
        loader.set_epoch(epoch)
        orders.append(torch.cat([batch.index for batch in loader]).tolist())
    return orders


def run(args) -> None:
    import copy
    import math
    import statistics
    import tempfile
    import time

    import torch
    from omegaconf import OmegaConf
    from torch.utils.data import TensorDataset

    import torchdistill_arm as td
    from common import ChunkData, Chunks, interleave, ratio_stats, write_result
    from kdrun.engine.teachers import obtain_teacher
    from kdrun.data import DataConfig, build_data
    from kdrun.engine.config import OptimConfig, SchedConfig
    from kdrun.engine.distiller import Distiller
    from kdrun.models.frozen import FrozenTeacher
    from kdrun.engine.evaluate import top1
    from kdrun.engine.loop import StepSettings, fit, train_epoch
    from kdrun.engine.optim import build_optimizer
    from kdrun.losses import build_losses, ce_weight
    from kdrun.losses.response.kd import KDConfig
    from kdrun.models import create_model
    from kdrun.engine.config import TeacherConfig
    from kdrun.tracking.tracker import Tracker

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    data_cfg = OmegaConf.structured(DataConfig(name="digits", augment=False, batch_size=args.batch_size))
    data = build_data(data_cfg, seed=args.seed)

    # the teacher: a kdrun zoo model trained once through kdrun's teacher cache
    teacher_cfg = OmegaConf.structured(TeacherConfig(name=args.teacher))
    record = obtain_teacher(teacher_cfg, data_cfg, data, args.seed, Path(args.cache_dir), device,
                            progress=False)
    teacher = record.model.eval().requires_grad_(False)
    teacher_top1 = top1(teacher, data.test, device)

    # the student's initialisation, as a kdrun cell makes it (seeded, then built)
    torch.manual_seed(args.seed)
    student0 = create_model(args.student, num_classes=data.num_classes, in_chans=data.in_chans)
    init_state = copy.deepcopy(student0.state_dict())

    def fresh_student():
        model = create_model(args.student, num_classes=data.num_classes, in_chans=data.in_chans)
        model.load_state_dict(init_state)
        return model.train()

    probe = torch.zeros(2, data.in_chans, data.image_size, data.image_size)
    with torch.no_grad():
        s_probe, t_probe = fresh_student().eval()(probe), teacher(probe)
    kd_cfg = {"kd": OmegaConf.structured(KDConfig(temperature=args.temperature, alpha=args.alpha))}
    optim_cfg = OmegaConf.structured(OptimConfig(name="sgd", lr=args.lr, momentum=args.momentum,
                                                 weight_decay=args.weight_decay))
    sched_cfg = OmegaConf.structured(SchedConfig(name="constant"))

    def kdrun_objective():
        losses = build_losses(kd_cfg, s_probe, t_probe)
        return Distiller(fresh_student(), losses, FrozenTeacher(copy.deepcopy(teacher), args.teacher),
                         ce_weight=ce_weight(kd_cfg))

    # torchdistill's view of the same data: torch Datasets of kdrun's split tensors, read in
    # kdrun's per-epoch order (enough epochs for the timing and the full run)
    steps_per_epoch = len(data.train)
    timed_steps = (args.rounds + 1) * args.steps
    orders = epoch_orders(data.train, max(args.epochs, math.ceil(timed_steps / steps_per_epoch) + 1))
    dataset_dict = {split: TensorDataset(loader.images, loader.labels)
                    for split, loader in (("train", data.train), ("val", data.val), ("test", data.test))}
    td_alpha = 1.0 - args.alpha  # torchdistill's KDLoss: alpha * CE + (1 - alpha) * T^2 * KL

    def td_box(epochs):
        config = td.train_config(orders, epochs=epochs, batch_size=args.batch_size,
                                 eval_batch_size=data_cfg.eval_batch_size, lr=args.lr,
                                 momentum=args.momentum, weight_decay=args.weight_decay,
                                 temperature=args.temperature, alpha=td_alpha)
        return td.build_box(copy.deepcopy(teacher), fresh_student(), dataset_dict, config, device)

    def kdrun_stepper(steps):
        """kdrun's train_epoch over the next `steps` training batches, per call."""
        objective = kdrun_objective()
        loader = copy.copy(data.train)
        chunks = Chunks(loader, steps, on_epoch=loader.set_epoch)
        optimizer = build_optimizer(objective.parameters(), optim_cfg)
        settings = StepSettings(objective, "off", torch.amp.GradScaler("cpu", enabled=False), False, None)
        return objective, chunks, lambda: train_epoch(objective, settings, ChunkData(chunks), optimizer,
                                                      0, 1, device, False, "bench", False)

    # same job? both arms in lockstep from the same initialisation for a few steps
    check_obj, check_chunks, kdrun_step = kdrun_stepper(1)
    check_box = td_box(1)
    check_box.pre_epoch_process(epoch=0)
    td_batches = iter(check_box.train_data_loader)
    lockstep, same_batches = [], True
    for step in range(min(args.check_steps, steps_per_epoch)):  # within the first epoch
        kd_loss = kdrun_step()["loss"]
        x, y, supp = next(td_batches)
        same_batches &= bool(torch.equal(x, check_chunks.last.x) and torch.equal(y, check_chunks.last.y))
        loss = check_box.forward_process(x.to(device), y.to(device), supp)
        check_box.post_forward_process(loss=loss)
        diff = max((a - b).abs().max().item() for a, b in
                   zip(check_obj.student.parameters(), check_box.student_model.model.parameters()))
        lockstep.append({"step": step + 1, "kdrun_loss": kd_loss, "torchdistill_loss": loss.item(),
                         "max_param_diff": diff})
    checks = {"same_batches": same_batches, "lockstep": lockstep}

    # 1. step time, interleaved
    _, _, kdrun_chunk = kdrun_stepper(args.steps)
    box = td_box(args.epochs)
    td_chunks = Chunks(box.train_data_loader, args.steps)

    def torchdistill_chunk():
        box.pre_epoch_process(epoch=max(td_chunks.epoch, 0))
        td.train_steps(box, td_chunks, device, td_chunks.epoch)

    arms = {"kdrun": kdrun_chunk, "torchdistill": torchdistill_chunk}
    for arm in arms.values():  # warm-up
        arm()
    times = interleave(arms, args.rounds, seed=args.seed)
    step_ratio = ratio_stats(times["kdrun"], times["torchdistill"])
    step_ms = {k: 1000 * statistics.median(v) / args.steps for k, v in times.items()}

    # 2. top-1 after the same epochs, each arm trained from scratch on its own
    runs = {}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tracker = Tracker(Path(tmp))
        result = fit(kdrun_objective(), data, epochs=args.epochs, optim=optim_cfg, sched=sched_cfg,
                     ckpt_dir=Path(tmp) / "checkpoints", tracker=tracker, device=device,
                     progress=False, data_parallel=False)
        wall = time.perf_counter() - t0
        epochs_log = [{k: r[k] for k in ("epoch", "loss", "val_top1", "test_top1")}
                      for r in map(json.loads, tracker.metrics.path.read_text().splitlines())]
    runs["kdrun"] = {"student_top1": result.student_top1, "val_top1": result.val_top1,
                     "best_student_top1": result.best_student_top1, "best_epoch": result.best_epoch,
                     "epochs": epochs_log, "wall_s": wall}
    t0 = time.perf_counter()
    outcome = td.fit(td_box(args.epochs), args.epochs, device,
                     td.eval_loader(dataset_dict["test"], data_cfg.eval_batch_size))
    runs["torchdistill"] = {**outcome, "wall_s": time.perf_counter() - t0}

    venv_record = {}
    stamp = VENV / f".installed-torchdistill-{TORCHDISTILL}"
    if stamp.is_file():
        venv_record = json.loads(stamp.read_text())
    payload = {
        "torchdistill": td.version(),
        "venv": {"path": str(VENV.relative_to(ROOT)), **venv_record,
                 "how": "venv with torchdistill and its non-torch requirements; a .pth file puts "
                        "kdrun's venv site-packages on sys.path, so both arms run kdrun's torch"},
        "job": {"data": "digits", "image_size": data.image_size, "augment": False,
                "batch_size": args.batch_size, "split_sizes": data.split_sizes,
                "steps_per_epoch": steps_per_epoch, "teacher": args.teacher, "student": args.student,
                "temperature": args.temperature, "kdrun_alpha": args.alpha,
                "torchdistill_alpha": round(td_alpha, 12), "optimizer": "sgd", "lr": args.lr,
                "momentum": args.momentum, "weight_decay": args.weight_decay, "sched": "constant",
                "epochs": args.epochs, "seed": args.seed},
        "teacher": {"name": args.teacher, "source": record.source, "top1": teacher_top1},
        "steps_per_chunk": args.steps,
        "step_ratio": step_ratio,
        "median_step_ms": step_ms,
        "top1": {name: r["student_top1"] for name, r in runs.items()},
        "runs": runs,
        "checks": checks,
        "differences": DIFFERENCES,
    }
    path = write_result("torchdistill", payload)
    print(f"kdrun_over_torchdistill_step: {step_ratio['median']:.3f} "
          f"[IQR {step_ratio['q1']:.3f}-{step_ratio['q3']:.3f}] ; top1 kdrun "
          f"{runs['kdrun']['student_top1']:.2f} vs torchdistill {runs['torchdistill']['student_top1']:.2f} "
          f"after {args.epochs} epochs")
    print(f"  step ms: kdrun {step_ms['kdrun']:.1f}, torchdistill {step_ms['torchdistill']:.1f}; wall s: "
          f"kdrun {runs['kdrun']['wall_s']:.1f}, torchdistill {runs['torchdistill']['wall_s']:.1f}; "
          f"teacher {args.teacher} top1 {teacher_top1:.2f} ({record.source})")
    first = lockstep[0] if lockstep else {}
    print(f"  lockstep: same batches {same_batches}; step 1 loss kdrun {first.get('kdrun_loss')} vs "
          f"torchdistill {first.get('torchdistill_loss')}; max param diff after {len(lockstep)} steps "
          f"{lockstep[-1]['max_param_diff'] if lockstep else None}")
    print(f"-> {path}")


DIFFERENCES = [
    "data loading: kdrun slices each batch out of the split tensor (index_select); torchdistill "
    "reads it sample by sample (TensorDataset.__getitem__, BaseDatasetWrapper's empty supp dict) "
    "and stacks it with torch's default collate. Part of what the step time measures. The sample "
    "order is kdrun's (replayed by a sampler given in torchdistill's sampler config), so both arms "
    "see identical batches (checks.same_batches).",
    "KD loss form: kdrun (1-alpha)*CE + alpha*T^2*kl_div(log_softmax(s/T), log_softmax(t/T), "
    "log_target=True) with alpha=0.9; torchdistill 1.1.5 KDLoss alpha*CE + (1-alpha)*T^2*"
    "KLDivLoss(log_softmax(s/T), softmax(t/T)) with alpha=0.1. Same value up to float rounding: the arms take bit-identical first steps, "
    "then drift apart by rounding, which SGD at this lr amplifies (checks.lockstep), so the two "
    "top-1 figures are two runs of one job, not one run twice.",
    "models: torchdistill gets kdrun's zoo models wrapped to return the logits tensor (its KDLoss "
    "reads io_dict['.']['output']); the computation is the same.",
    "teacher mode: torchdistill leaves it to the caller (pre_epoch_process only sets the student to "
    "train); it is handed over in eval mode, as kdrun's FrozenTeacher runs it. Both run it under no_grad.",
    "per-step bookkeeping is each framework's own: kdrun accumulates its loss terms and train "
    "accuracy on-device; torchdistill's reference train_one_epoch calls loss.item(), a MetricLogger "
    "update and a nan/inf check every step.",
    "full runs: both score val and test after every epoch; kdrun's fit also writes last.pt/best.pt and "
    "metrics.jsonl each epoch, the torchdistill arm keeps nothing on disk. The runs go one after the "
    "other (not interleaved), so their wall times carry the machine's load at the time.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet20")
    parser.add_argument("--student", default="resnet8")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--steps", type=int, default=5, help="steps per chunk")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.9, help="kdrun's: weight of the KD term")
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--weight-decay", type=float, default=5e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--check-steps", type=int, default=3,
                        help="steps both arms take in lockstep to show they run the same job")
    parser.add_argument("--cache-dir", default=str(ROOT / "outputs" / "cache"),
                        help="kdrun's teacher cache (paths.cache_dir)")
    parser.add_argument("--venv-only", action="store_true", help="create the torchdistill venv and stop")
    args = parser.parse_args()
    if args.venv_only:
        print(ensure_venv())
        return
    if not in_torchdistill_env():
        python = ensure_venv()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
        sys.exit(subprocess.call([str(python), str(Path(__file__).resolve()), *sys.argv[1:]], env=env))
    run(args)


if __name__ == "__main__":
    main()
