"""Born-again networks: Furlanello, Lipton, Tschannen, Itti & Anandkumar,
"Born-Again Neural Networks" (ICML 2018).

Generation 0 is the student's architecture trained on labels alone (cross-entropy);
generation k (k = 1..scheme.generations) is a freshly initialised copy of the same
architecture taught by generation k-1, frozen, through the selected methods (loss=kd
is the paper's; loss=at or loss=sp compose too, as in offline distillation). Every
generation trains for trainer.epochs with the same optimiser and schedule, the
paper's equal-budget sequence.

Generation 0 is trained in the cell rather than taken from the teacher cache: the
cache keys a model of the `teacher=` group trained with teacher.train, while BAN's
first teacher is the student's own architecture under the student's own budget.
Generation 0's initialisation is the offline student's (from `seed`), so its
accuracy equals the `loss=ce` baseline; generation k starts from a seed derived
from (seed, k). The next generation learns from best.pt (the best-validation
epoch), as an offline student learns from a cached teacher.

Layout: checkpoints/gen<k>/ (best.pt, last.pt) and metrics.gen<k>.jsonl per
generation; the last generation logs to metrics.jsonl, it being THE student.
"""

from __future__ import annotations

import torch

from kdrun.data.seeds import derive_seed
from kdrun.engine.assemble import (assemble_losses, build_student, loss_context, probe,
                                   probe_architecture, train)
from kdrun.engine.distiller import Distiller
from kdrun.models.frozen import FrozenTeacher
from kdrun.losses import build_losses, ce_weight, check_outputs
from kdrun.models.build import build_model
from kdrun.models.weights import read_state_dict


def _fresh_student(cell, generation: int) -> torch.nn.Module:
    if generation == 0:
        return build_student(cell)
    torch.manual_seed(derive_seed(cell.cfg.seed, "ban", generation) % 2**63)
    data = cell.data
    return build_model(cell.cfg.student, "student", data.num_classes, data.in_chans,
                       load_checkpoint=False)


def _frozen(cell, path) -> torch.nn.Module:
    data = cell.data
    model = build_model(cell.cfg.student, "student", data.num_classes, data.in_chans,
                        load_checkpoint=False)
    model.load_state_dict(read_state_dict(path))
    return model.to(cell.device)


def check_methods(cell) -> None:
    """Build the methods once against the architecture, so a bad loss setting fails before
    generation 0 trains (generation 1 builds them for real). The RNG is left untouched."""
    cfg, name = cell.cfg, cell.cfg.student.name
    with torch.random.fork_rng(devices=[]):
        arch = probe_architecture(cfg.student, "student", cell.data)
        check_outputs(cfg.loss, {"student": (name, arch), "teacher": (name, arch)})
        build_losses(cfg.loss, arch, arch, loss_context(cell.data))


def run_ban(cell) -> dict:
    cfg = cell.cfg
    name, last = cfg.student.name, cfg.scheme.generations
    check_methods(cell)
    generations, previous = [], None
    for k in range(last + 1):
        student = _fresh_student(cell, k)
        if previous is None:
            objective = Distiller(student)
        else:
            teacher = FrozenTeacher(previous, f"generation {k - 1}")
            losses = assemble_losses(cell, cfg.loss, student, name, probe(previous, cell.data),
                                     name)
            for loss in losses.values():
                loss.bind_teacher(previous)
            objective = Distiller(student, losses, teacher, ce_weight(cfg.loss))
        ckpt_dir = cell.dir / "checkpoints" / f"gen{k}"
        tracker = cell.tracker if k == last else cell.tracker.stage(f"gen{k}")
        summary = train(cell, objective, ckpt_dir=ckpt_dir, tracker=tracker, desc=f"gen{k}")
        generations.append({"generation": k, "student_top1": summary.student_top1,
                            "best_student_top1": summary.best_student_top1,
                            "val_top1": summary.val_top1, "best_epoch": summary.best_epoch,
                            "wall_s": summary.wall_s, "checkpoint": str(ckpt_dir / "best.pt")})
        if k < last:
            previous = _frozen(cell, ckpt_dir / "best.pt")
    return {**summary.as_dict(), "generations": generations,
            "wall_s": sum(g["wall_s"] for g in generations),
            "previous_generation_top1": generations[-2]["best_student_top1"],
            "student_params": sum(p.numel() for p in student.parameters())}
