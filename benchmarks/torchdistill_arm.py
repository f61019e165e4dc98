"""The torchdistill side of benchmark 5; runs inside benchmarks/.venv-torchdistill.

Everything that trains here is torchdistill's own machinery: `get_distillation_box`
builds the data loaders (from a dataset_dict of torch Datasets), the forward procs,
the WeightedSumLoss/KDLoss criterion and the SGD optimizer from a train_config dict,
and a step is `box.forward_process` + `box.post_forward_process` (backward, optimizer
step, zero_grad). The loop around them is `train_one_epoch` of torchdistill's reference
script, examples/torchvision/image_classification.py (the package ships no loop).

What this module adapts, and why:
- LogitsOnly: kdrun models return a ModelOutput; torchdistill's KDLoss reads the
  model's output tensor at io_dict['.']['output'] (student/teacher_module_path '.').
- ReplaySampler: torchdistill takes the sampler class from the config; this one
  replays the index order kdrun's loader uses in each epoch, so both arms see the
  same batches. Loading itself (Dataset.__getitem__ per sample, BaseDatasetWrapper's
  supp dict, torch's default collate) stays torchdistill's.
"""

from __future__ import annotations

import time
from typing import Iterable, Sequence

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler, SequentialSampler

import torchdistill
from torchdistill.core.distillation import get_distillation_box
from torchdistill.datasets.util import build_data_loader
from torchdistill.misc.log import MetricLogger, SmoothedValue

VERSION = "1.1.5"


class LogitsOnly(nn.Module):
    """A kdrun model as torchdistill expects it: forward returns the logits tensor."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


class ReplaySampler(Sampler):
    """Epoch e (the e-th iter()) yields orders[e]: kdrun's shuffled order of that epoch."""

    def __init__(self, data_source: Dataset, orders: Sequence[Sequence[int]]):
        self.orders, self.epoch = orders, 0
        self.length = len(orders[0])

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        if self.epoch >= len(self.orders):
            raise RuntimeError(f"ReplaySampler has orders for {len(self.orders)} epochs only")
        order = self.orders[self.epoch]
        self.epoch += 1
        return iter(order)


def train_config(orders, *, epochs: int, batch_size: int, eval_batch_size: int, lr: float,
                 momentum: float, weight_decay: float, temperature: float, alpha: float) -> dict:
    """A train_config in the layout of torchdistill's configs/sample/cifar10/kd/*.yaml.

    alpha is torchdistill's: KDLoss = alpha * CE + (1 - alpha) * T^2 * KL. No scheduler:
    the learning rate stays constant (box.lr_scheduler is None).
    """
    return {
        "num_epochs": epochs,
        "train_data_loader": {
            "dataset_id": "train",
            "sampler": {"class_or_func": ReplaySampler, "kwargs": {"orders": orders}},
            "kwargs": {"batch_size": batch_size, "num_workers": 0, "drop_last": True},
        },
        "val_data_loader": {
            "dataset_id": "val",
            "sampler": {"class_or_func": SequentialSampler, "kwargs": None},
            "kwargs": {"batch_size": eval_batch_size, "num_workers": 0, "drop_last": False},
        },
        "teacher": {"forward_proc": "forward_batch_only", "sequential": [], "requires_grad": False,
                    "frozen_modules": []},
        "student": {"forward_proc": "forward_batch_only", "sequential": [], "requires_grad": True,
                    "frozen_modules": []},
        "optimizer": {"key": "SGD", "kwargs": {"lr": lr, "momentum": momentum,
                                               "weight_decay": weight_decay}},
        "criterion": {
            "key": "WeightedSumLoss",
            "kwargs": {"sub_terms": {"kd": {
                "criterion": {"key": "KDLoss", "kwargs": {
                    "student_module_path": ".", "student_module_io": "output",
                    "teacher_module_path": ".", "teacher_module_io": "output",
                    "temperature": temperature, "alpha": alpha, "reduction": "batchmean"}},
                "weight": 1.0}}},
        },
    }


def build_box(teacher: nn.Module, student: nn.Module, dataset_dict: dict, config: dict,
              device: torch.device):
    """torchdistill's DistillationBox; the teacher is handed over in eval mode (torchdistill
    never switches it: pre_epoch_process only calls student_model.train())."""
    return get_distillation_box(LogitsOnly(teacher).eval(), LogitsOnly(student), dataset_dict,
                                config, device, device_ids=None, distributed=False, lr_factor=1)


def train_steps(box, batches: Iterable, device: torch.device, epoch: int,
                log_freq: int = 10**9) -> MetricLogger:
    """train_one_epoch of torchdistill's examples/torchvision/image_classification.py, over `batches`
    (the box's whole train loader, or a chunk of it); returns its MetricLogger."""
    metric_logger = MetricLogger(delimiter="  ")
    metric_logger.add_meter("lr", SmoothedValue(window_size=1, fmt="{value}"))
    metric_logger.add_meter("img/s", SmoothedValue(window_size=10, fmt="{value}"))
    header = "Epoch: [{}]".format(epoch)
    for sample_batch, targets, supp_dict in metric_logger.log_every(batches, log_freq, header):
        start_time = time.time()
        sample_batch, targets = sample_batch.to(device), targets.to(device)
        loss = box.forward_process(sample_batch, targets, supp_dict)
        box.post_forward_process(loss=loss)
        batch_size = sample_batch.shape[0]
        metric_logger.update(loss=loss.item(), lr=box.optimizer.param_groups[0]["lr"])
        metric_logger.meters["img/s"].update(batch_size / (time.time() - start_time))
        if torch.isnan(loss) or torch.isinf(loss):
            raise ValueError("The training loop was broken due to loss = {}".format(loss))
    return metric_logger


@torch.inference_mode()
def evaluate(model: nn.Module, loader, device: torch.device) -> float:
    """Top-1 % (the reference script's evaluate, acc1 only)."""
    model.eval()
    correct = total = 0
    for image, target in loader:
        output = model(image.to(device))
        correct += (output.argmax(1) == target.to(device)).sum().item()
        total += target.numel()
    return 100.0 * correct / max(total, 1)


def eval_loader(dataset: Dataset, batch_size: int):
    return build_data_loader(dataset, {"sampler": {"class_or_func": SequentialSampler, "kwargs": None},
                                       "kwargs": {"batch_size": batch_size, "num_workers": 0}},
                             distributed=False)


def fit(box, epochs: int, device: torch.device, test_loader) -> dict:
    """The reference script's train(): per epoch pre_epoch_process, train_one_epoch, validation,
    post_epoch_process; also scores test each epoch, as kdrun's fit does, for the same records."""
    best = {"val_top1": None, "best_student_top1": None, "best_epoch": None}
    epochs_log = []
    for epoch in range(epochs):
        box.pre_epoch_process(epoch=epoch)
        logged = train_steps(box, box.train_data_loader, device, epoch)
        val = evaluate(box.student_model, box.val_data_loader, device)
        test = evaluate(box.student_model, test_loader, device)
        epochs_log.append({"epoch": epoch + 1, "loss": logged.meters["loss"].global_avg,
                           "val_top1": val, "test_top1": test})
        if best["val_top1"] is None or val > best["val_top1"]:
            best = {"val_top1": val, "best_student_top1": test, "best_epoch": epoch + 1}
        box.post_epoch_process()
    return {"student_top1": epochs_log[-1]["test_top1"], **best, "epochs": epochs_log}


def version() -> str:
    return torchdistill.__version__
