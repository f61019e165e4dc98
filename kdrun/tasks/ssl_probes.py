"""Scoring frozen embeddings with labels: weighted k-NN and a linear probe (top-1 %).

Both fit on the embeddings of the labelled training bank and score a split, the usual
protocols of self-supervised learning: k-NN as in Wu et al. (CVPR 2018) and DINO's
eval_knn (k = 20 nearest by cosine, votes weighted exp(cos / 0.07)); the linear probe is
sklearn's multinomial LogisticRegression on standardised embeddings (lbfgs: deterministic),
where DINO trains a linear layer with SGD for 100 epochs (far beyond a per-epoch metric).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

KNN_K = 20
KNN_TEMPERATURE = 0.07
QUERY_CHUNK = 256  # queries scored at a time: memory is QUERY_CHUNK x bank rows


@torch.no_grad()
def embed(predictor: Callable[[Tensor], Any], loader: Iterable, device: torch.device
          ) -> tuple[Tensor, Tensor]:
    """(embeddings (N, D) float32 on CPU, labels (N,)) of `loader` in eval mode."""
    was_training = getattr(predictor, "training", False)
    if isinstance(predictor, nn.Module):
        predictor.eval()
    vectors, labels = [], []
    for batch in loader:
        vectors.append(predictor(batch.x.to(device)).embedding.flatten(1).float().cpu())
        labels.append(batch.y)
    if isinstance(predictor, nn.Module):
        predictor.train(was_training)
    return torch.cat(vectors), torch.cat(labels)


def knn_top1(bank: Tensor, bank_labels: Tensor, queries: Tensor, labels: Tensor,
             k: int = KNN_K, temperature: float = KNN_TEMPERATURE) -> float:
    """Percent of queries whose weighted vote among their k most cosine-similar bank rows is
    their label; each neighbour votes exp(cos / temperature) for its class."""
    if queries.shape[0] == 0:
        return 0.0
    bank = F.normalize(bank, dim=1)
    classes = int(max(bank_labels.max(), labels.max())) + 1
    correct = 0
    for chunk, truth in zip(F.normalize(queries, dim=1).split(QUERY_CHUNK), labels.split(QUERY_CHUNK)):
        top, where = (chunk @ bank.t()).topk(min(k, bank.shape[0]), dim=1)
        votes = torch.zeros(chunk.shape[0], classes, dtype=top.dtype)
        votes.scatter_add_(1, bank_labels[where], torch.exp(top / temperature))
        correct += int((votes.argmax(1) == truth).sum())
    return 100.0 * correct / queries.shape[0]


def fit_linear_probe(bank: Tensor, bank_labels: Tensor) -> Any:
    """A multinomial logistic regression on standardised embeddings (deterministic)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return probe.fit(bank.double().numpy(), bank_labels.numpy())


def linear_top1(probe: Any, queries: Tensor, labels: Tensor) -> float:
    if queries.shape[0] == 0:
        return 0.0
    predicted = probe.predict(queries.double().numpy())
    return 100.0 * float(np.mean(predicted == labels.numpy()))


def probe_scores(predictor: Callable[[Tensor], Any], split: Any, device: torch.device
                 ) -> dict[str, float]:
    """{"knn", "linear"} of `split` (a kdrun.data.ssl_data.LabelledSplit). val and test of one
    epoch embed the same bank with the same weights: the probe fitted for val is reused."""
    bank, bank_labels = embed(predictor, split.bank, device)
    queries, labels = embed(predictor, split, device)
    memo = split.probe_memo
    if "bank" not in memo or not torch.equal(memo["bank"], bank):
        memo.clear()
        memo.update(bank=bank, probe=fit_linear_probe(bank, bank_labels))
    return {"knn": knn_top1(bank, bank_labels, queries, labels),
            "linear": linear_top1(memo["probe"], queries, labels)}
