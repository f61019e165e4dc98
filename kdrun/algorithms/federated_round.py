"""One federated round: the chosen clients train locally, the server aggregates.

Every model trains through `fit` in its own folder under
checkpoints/round_<r>/ (client_<k>/, server/), so a cell killed mid-round resumes
inside the round exactly; the folder's weight files are removed once the round is
recorded in checkpoints/last.pt.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator

from torch import nn

from kdrun.algorithms.fedavg import fedavg, select_clients
from kdrun.algorithms.teacher_ensemble import TeacherEnsemble, ensemble_top1
from kdrun.engine.assemble import runtime_options
from kdrun.engine.distiller import Distiller
from kdrun.models.frozen import FrozenTeacher
from kdrun.engine.evaluate import top1
from kdrun.engine.loop import fit
from kdrun.models.weights import read_state_dict
from kdrun.tracking.tracker import Tracker


class NoBatches:
    """An empty split: clients and the server's distillation stage are not scored on test
    inside the round (their own metrics show test_top1 0.0); the round scores the server."""

    num_samples = 0

    def set_epoch(self, epoch: int) -> None:
        pass

    def __len__(self) -> int:
        return 0

    def __iter__(self) -> Iterator:
        return iter(())


@dataclass
class Federation:
    """What every round reads: data per client, the public split, the server's losses."""

    clients: list[Any]            # DataBundle per client (train = its partition)
    public: Any | None            # DataBundle whose train is the public split (distill)
    losses: nn.ModuleDict | None  # the server's distillation terms (distill)


def single_process(cell) -> dict[str, Any]:
    """fit() options from `trainer`, without data parallelism: a client's data is not sharded
    across ranks (under torchrun every rank would repeat the federation)."""
    return {**runtime_options(cell), "lr_scale": 1.0, "data_parallel": False}


def train_client(cell, server: nn.Module, data, folder: Path, desc: str) -> tuple[nn.Module, float]:
    """A copy of the server trained on one client's data with label CE (McMahan's ClientUpdate)."""
    cfg, algo = cell.cfg, cell.cfg.algorithm
    local = copy.deepcopy(server)
    fit(Distiller(local), replace(data, test=NoBatches()), epochs=algo.local_epochs, optim=cfg.optim,
        sched=cfg.sched, ckpt_dir=folder, tracker=Tracker(folder), desc=desc, **single_process(cell))
    return local, float(data.train.num_samples)


def distill_server(cell, server: nn.Module, clients: list[nn.Module], fed: Federation,
                   folder: Path, desc: str) -> None:
    """FedDF: the server (FedAvg-initialised) distils the clients' mean logits on the public
    split, without labels; the weights of its best validation epoch are kept."""
    algo = cell.cfg.algorithm
    ensemble = TeacherEnsemble([FrozenTeacher(m, f"client{k}") for k, m in enumerate(clients)],
                               "mean", feature_teacher="mean", name="clients")
    objective = Distiller(server, fed.losses, ensemble, ce_weight=0.0)
    fit(objective, replace(fed.public, test=NoBatches()), epochs=algo.server_epochs,
        optim=algo.server_optim, sched=algo.server_sched, ckpt_dir=folder, tracker=Tracker(folder),
        desc=desc, optim_key="algorithm.server_optim", sched_key="algorithm.server_sched",
        **single_process(cell))
    server.load_state_dict(read_state_dict(folder / "best.pt"))


def run_round(cell, round_: int, server: nn.Module, fed: Federation, folder: Path) -> dict[str, Any]:
    """Round `round_` (1-based): update `server` in place, return the round's record."""
    cfg, algo, data = cell.cfg, cell.cfg.algorithm, cell.data
    chosen = select_clients(len(fed.clients), algo.clients_per_round, cfg.seed, round_)
    models, sizes = [], []
    for k in chosen:
        local, n = train_client(cell, server, fed.clients[k], folder / f"client_{k}",
                                f"round {round_} client {k}")
        models.append(local)
        sizes.append(n)
    server.load_state_dict(fedavg([m.state_dict() for m in models], sizes))
    record: dict[str, Any] = {"round": round_, "clients": chosen, "client_samples": sizes,
                              "client_val_top1": [top1(m, data.val, cell.device) for m in models]}
    if algo.aggregation == "distill":
        record["fedavg_test_top1"] = top1(server, data.test, cell.device)
        record["ensemble_test_top1"] = ensemble_top1(models, data.test, cell.device)
        distill_server(cell, server, models, fed, folder / "server", f"round {round_} server")
    record["val_top1"] = top1(server, data.val, cell.device)
    record["test_top1"] = top1(server, data.test, cell.device)
    return record


def drop_weights(folder: Path) -> None:
    """Remove a finished round's checkpoints (its metrics files stay)."""
    for path in folder.rglob("*.pt"):
        path.unlink(missing_ok=True)
