"""How schemes and algorithms plug into the one cell builder (kdrun/engine/cell.py).

A scheme says who teaches whom (offline: a fixed teacher; online: peers; self: the model
itself); an algorithm says how the student learns from it (vanilla, multi-teacher,
federated, ...). Each is a Plugin registered here, by name with its config schema, when
its package is imported (kdrun/plugins.py imports them all for the CLI); the engine looks
them up here and never imports them.

Every extension point is optional; with none overridden the builder runs offline
distillation from one teacher (scheme=offline algorithm=vanilla). In the order the
builder calls them:

    check(cell)                       refuse bad settings before anything trains
    data(cell)                        the data the student learns from, when not the teacher's
                                      (cross-modal: its own view of each pair)
    student(cell)                     bring the student: (model, name) (nas, quantized)
    teacher_probe(cell)               what the teacher(s) look like: (probe, name) (multi-teacher)
    losses(cell, losses, s, t)        add or replace objective terms, sized by the probes
    teacher(cell)                     bring the teacher(s): Teaching (multi-teacher ensemble)
    objective(cell, student, losses, teacher)   the trained module (Distiller by default)
    tracker(cell, objective)          a tracker that logs the plug-in's own parts per epoch
    train(cell, objective)            replace the single fit (data-free: synthetic batches)
    result(cell, objective, result)   extra result.json keys (given the keys so far)
    learn(cell)                       replace everything after check: generations (BAN),
                                      peers (DML, ONE), rounds (federated), tasks (lifelong)

Class attributes: `teacher_required` (a teacher even when no selected loss reads one),
`live_teacher` (the teacher runs live, never from the output cache: its features reach
the losses), `distil_on_student_part` (a partition-started student distils on its own
part, Alballa & Canini 2024), `schemes` (an algorithm: the schemes it composes with).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from torch import nn

from kdrun.config.errors import ConfigError

SCHEMES: dict[str, type["Plugin"]] = {}
ALGORITHMS: dict[str, type["Plugin"]] = {}


@dataclass
class Teaching:
    """What teaches the student: a callable batch -> ModelOutput, the model whose pieces a loss
    may reuse (bind_teacher), and the result.json keys that say where it came from."""

    teacher: Callable[[Any], Any]
    model: nn.Module | None
    result: dict[str, Any] = field(default_factory=dict)


class Plugin:
    name: ClassVar[str]
    config: ClassVar[type]
    schemes: ClassVar[tuple[str, ...]] = ("offline",)
    teacher_required: ClassVar[bool] = False
    live_teacher: ClassVar[bool] = False
    distil_on_student_part: ClassVar[bool] = True

    def check(self, cell) -> None:
        pass

    def data(self, cell):
        return None

    def student(self, cell) -> tuple[nn.Module, str] | None:
        return None

    def teacher_probe(self, cell) -> tuple[Any, str] | None:
        return None

    def losses(self, cell, losses: nn.ModuleDict, student_probe, teacher_probe) -> nn.ModuleDict:
        return losses

    def teacher(self, cell) -> Teaching | None:
        return None

    def objective(self, cell, student: nn.Module, losses: nn.ModuleDict,
                  teacher: Teaching | None) -> nn.Module | None:
        return None

    def tracker(self, cell, objective: nn.Module):
        return None

    def train(self, cell, objective: nn.Module):
        return None

    def result(self, cell, objective: nn.Module, result: dict[str, Any]) -> dict[str, Any]:
        return {}

    def learn(self, cell) -> dict[str, Any] | None:
        return None


def register_scheme(cls: type[Plugin]) -> type[Plugin]:
    SCHEMES[cls.name] = cls
    return cls


def register_algorithm(cls: type[Plugin]) -> type[Plugin]:
    ALGORITHMS[cls.name] = cls
    return cls


def plugins_for(scheme: str, algorithm: str) -> tuple[Plugin, Plugin]:
    """(algorithm, scheme) plug-ins for a cell; a combination kdrun does not run fails here."""
    if not SCHEMES or not ALGORITHMS:
        raise RuntimeError("no scheme or algorithm is registered: import kdrun.plugins first "
                           "(kdrun.plugins.load_plugins())")
    for kind, name, known in (("scheme", scheme, SCHEMES), ("algorithm", algorithm, ALGORITHMS)):
        if name not in known:
            raise ConfigError(f"{kind}={name}: unknown; use one of {', '.join(sorted(known))}")
    if scheme not in ALGORITHMS[algorithm].schemes:
        works = ", ".join(f"scheme={s}" for s in ALGORITHMS[algorithm].schemes)
        raise ConfigError(f"scheme={scheme} algorithm={algorithm} is not a combination kdrun runs: "
                          f"algorithm={algorithm} composes with {works}")
    return ALGORITHMS[algorithm](), SCHEMES[scheme]()
