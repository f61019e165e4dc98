"""Token-level distillation formulas for causal language models (groundwork for task=lm).

Every function takes student/teacher logits of shape (B, T, V) and a (B, T) mask
(bool or 0/1) marking the tokens that count; padding and prompt tokens are 0.
Only counted tokens enter the computation (they are selected before any softmax,
so NaN/inf logits at padding cannot leak), and each value is the mean over them:
sum over counted tokens / number of counted tokens. A mask with no counted token
gives 0 (still attached to the student's graph). Teacher logits are detached here.
Half-precision logits are upcast to float32 before any softmax.

Temperature scaling follows Hinton et al. (2015), as in kdrun.losses.response.kd:
the gradient of a divergence between logits softened by T shrinks by 1/T^2, so
KL-type values (token_kl, generalized_jsd, topk_kl) are multiplied by T^2; TVD is
first order in p_s - p_t, its gradient shrinks only by 1/T, so it is multiplied by T.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from kdrun.config.errors import ConfigError
from kdrun.data.batch import IGNORE_INDEX

DIRECTIONS = ("forward", "reverse")


def token_nll(logits: Tensor, y: Tensor) -> Tensor:
    """Summed negative log-likelihood of the scored targets (y != IGNORE_INDEX), float32
    softmax; logits (..., V), y of the leading shape."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum")


def token_ce(logits: Tensor, y: Tensor) -> Tensor:
    """Cross-entropy per scored token (their mean; 0 when none is scored)."""
    return token_nll(logits, y) / (y != IGNORE_INDEX).sum().clamp_min(1)


def vocab_check(student_vocab: int, teacher_vocab: int) -> None:
    """Token-level KD compares distributions over the same token ids, so the sizes must agree."""
    if student_vocab != teacher_vocab:
        raise ConfigError(f"token-level KD needs one vocabulary: teacher has {teacher_vocab} tokens, "
                          f"student has {student_vocab}; pick a teacher and student sharing a tokenizer")


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ConfigError(f"temperature={temperature}: use a temperature > 0")


def _log_probs(logits: Tensor, temperature: float) -> Tensor:
    """log softmax(logits / T) over the vocabulary, in at least float32."""
    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    return F.log_softmax(logits / temperature if temperature != 1 else logits, dim=-1)


def _counted(mask: Tensor, logits: Tensor) -> Tensor:
    """The (B, T) boolean mask of counted tokens, checked against the logits' (B, T, V) shape."""
    if logits.dim() != 3 or tuple(mask.shape) != tuple(logits.shape[:2]):
        raise ValueError(f"mask has shape {tuple(mask.shape)}, logits {tuple(logits.shape)}; "
                         "expected logits (B, T, V) and mask (B, T)")
    return mask.bool()


def _token_mean(per_token: Tensor) -> Tensor:
    """Mean of the (N,) values of the counted tokens; 0 when there are none."""
    return per_token.sum() / max(per_token.numel(), 1)


def _pair(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
          temperature: float) -> tuple[Tensor, Tensor]:
    """(N, V) student and detached teacher log-probabilities of the N counted tokens."""
    _check_temperature(temperature)
    vocab_check(student_logits.shape[-1], teacher_logits.shape[-1])
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"student logits {tuple(student_logits.shape)} and teacher logits "
                         f"{tuple(teacher_logits.shape)} must have one (B, T, V) shape")
    counted = _counted(mask, student_logits)
    if counted.all():  # packed text: every token counts, so views rather than (N, V) copies
        student_rows, teacher_rows = student_logits.flatten(0, 1), teacher_logits.flatten(0, 1)
    else:
        student_rows, teacher_rows = student_logits[counted], teacher_logits[counted]
    log_p_s = _log_probs(student_rows, temperature)
    with torch.no_grad():
        log_p_t = _log_probs(teacher_rows.detach(), temperature).to(log_p_s.dtype)
    return log_p_s, log_p_t


def _kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Per-row KL(p || q) of (N, V) log-probabilities; outcomes with p = 0 count 0, not NaN."""
    if log_p.requires_grad:  # the student's side (reverse KL): p log p via xlogy (0 log 0 = 0)
        p = log_p.exp()
        return torch.special.xlogy(p, p).sum(-1) - (p * log_q).sum(-1)
    # the teacher's side, no grad: PyTorch's fused kl_div (about 1.5x cheaper per step than
    # xlogy here: benchmarks/bench_lm.py); clamping log 0 = -inf to the most negative float
    # keeps 0 * log 0 = 0 where kl_div alone would give NaN
    return F.kl_div(log_q, log_p.clamp(min=torch.finfo(log_p.dtype).min), reduction="none",
                    log_target=True).sum(-1)


def token_kl(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
             temperature: float = 1.0, direction: str = "forward") -> Tensor:
    """T^2 * KL per token, averaged over the counted tokens.

    forward: KL(p_t || p_s), word-level KD (Kim & Rush, "Sequence-Level Knowledge
    Distillation", EMNLP 2016): mode-covering, the student spreads mass over all the
    teacher's plausible next tokens. reverse: KL(p_s || p_t) (Gu et al., "MiniLLM",
    ICLR 2024): mode-seeking, so a small student does not put mass on tokens the
    teacher finds unlikely. T^2 keeps the gradient scale independent of T (Hinton 2015).
    """
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction={direction!r}: use one of {', '.join(DIRECTIONS)}")
    log_p_s, log_p_t = _pair(student_logits, teacher_logits, mask, temperature)
    kl = _kl(log_p_t, log_p_s) if direction == "forward" else _kl(log_p_s, log_p_t)
    return _token_mean(kl) * temperature**2


def generalized_jsd(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
                    beta: float = 0.5, temperature: float = 1.0) -> Tensor:
    """T^2 * generalized JSD per token (Agarwal et al., GKD, ICLR 2024, Eq. 1), token mean.

    JSD_beta(P || Q) = beta KL(P || M) + (1 - beta) KL(Q || M), M = beta P + (1 - beta) Q,
    with P the teacher and Q the student; log M is a logsumexp mixture in log space.
    beta = 0.5 is the symmetric JSD, bounded by ln 2. Convention (TRL GKDTrainer
    generalized_jsd_loss, since huggingface/trl PR #3043): beta = 0 is the forward
    KL(P || Q) and beta = 1 the reverse KL(Q || P), both computed directly. Why special
    cases: the mixture formula itself tends to 0 at both ends (JSD_beta ~ beta KL(P || Q)
    as beta -> 0, ~ (1 - beta) KL(Q || P) as beta -> 1), so the value jumps at 0 and 1
    and near them beta mostly scales the loss. T^2 as in token_kl (TRL applies none).
    """
    if not 0.0 <= beta <= 1.0:
        raise ConfigError(f"beta={beta}: use a beta in [0, 1] (0 forward KL, 1 reverse KL)")
    log_p_s, log_p_t = _pair(student_logits, teacher_logits, mask, temperature)
    if beta == 0.0:
        jsd = _kl(log_p_t, log_p_s)
    elif beta == 1.0:
        jsd = _kl(log_p_s, log_p_t)
    else:
        log_m = torch.logaddexp(log_p_t + math.log(beta), log_p_s + math.log(1.0 - beta))
        jsd = beta * _kl(log_p_t, log_m) + (1.0 - beta) * _kl(log_p_s, log_m)
    return _token_mean(jsd) * temperature**2


def token_tvd(student_logits: Tensor, teacher_logits: Tensor, mask: Tensor,
              temperature: float = 1.0) -> Tensor:
    """T * total variation 0.5 * sum_v |p_t - p_s| per token, averaged over counted tokens.

    Wen et al., "f-Divergence Minimization for Sequence-Level Knowledge Distillation"
    (ACL 2023): TVD is symmetric and bounded (in [0, 1] at T = 1), so neither mode
    covering nor mode seeking dominates. Scaled by T, not T^2 (module docstring).
    """
    log_p_s, log_p_t = _pair(student_logits, teacher_logits, mask, temperature)
    tvd = 0.5 * (log_p_t.exp() - log_p_s.exp()).abs().sum(-1)
    return _token_mean(tvd) * temperature


def topk_targets(teacher_logits: Tensor, k: int, temperature: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """Compress the teacher's softened next-token distribution to its top k for a cache.

    Returns (values (B, T, k): log-probabilities of the k most likely tokens, largest
    first; indices (B, T, k); rest (B, T): log of the probability mass outside them,
    -inf when k = V). Computed in float32, returned in the logits' dtype. Log-probs
    rather than probabilities keep fp16 storage safe: a probability below 6e-8
    underflows to 0 in fp16, its log does not. rest is a logsumexp over the other
    tokens, not log(1 - sum(kept)), so it stays accurate when the rest mass is tiny.
    Why keep rest: Anshumann et al., "Sparse Logit Sampling" (ACL 2025), prove cached
    top-k probabilities give a biased teacher; one rest bucket at least keeps the
    target a true distribution (see topk_kl).
    """
    _check_temperature(temperature)
    vocab = teacher_logits.shape[-1]
    if not 1 <= k <= vocab:
        raise ConfigError(f"k={k}: keep between 1 and the vocabulary size {vocab} teacher tokens")
    log_p_t = _log_probs(teacher_logits.detach(), temperature)
    values, indices = log_p_t.topk(k, dim=-1)
    rest = log_p_t.scatter(-1, indices, float("-inf")).logsumexp(-1)
    return values.to(teacher_logits.dtype), indices, rest.to(teacher_logits.dtype)


def topk_kl(student_logits: Tensor, indices: Tensor, teacher_logprobs: Tensor,
            teacher_rest_logprob: Tensor, mask: Tensor, temperature: float = 1.0) -> Tensor:
    """T^2 * forward KL against a cached top-k teacher, averaged over counted tokens.

    The teacher is the k+1-outcome distribution from topk_targets: its k kept
    probabilities plus one "rest" bucket holding the remaining mass. It is NOT
    renormalised over the k tokens: kept + rest sum to 1, so this is an exact KL
    between two distributions over k + 1 outcomes. The student's distribution is
    coarsened the same way: its k probabilities at `indices` plus a rest bucket,
    logsumexp of its log-probs outside them. With k = V it equals token_kl; with
    k < V it is <= token_kl (data processing: coarsening cannot increase KL).
    `temperature` softens the student and must be the one the targets were built with.
    """
    _check_temperature(temperature)
    counted = _counted(mask, student_logits)
    if (indices.shape != teacher_logprobs.shape or indices.shape[:2] != student_logits.shape[:2]
            or teacher_rest_logprob.shape != indices.shape[:2]):
        raise ValueError(f"indices {tuple(indices.shape)}, teacher_logprobs {tuple(teacher_logprobs.shape)} "
                         f"and teacher_rest_logprob {tuple(teacher_rest_logprob.shape)} must be (B, T, k), "
                         f"(B, T, k) and (B, T) for student logits {tuple(student_logits.shape)}")
    log_q = _log_probs(student_logits[counted], temperature)
    idx = indices[counted]
    log_p = teacher_logprobs.detach()[counted].to(log_q.dtype)
    log_p_rest = teacher_rest_logprob.detach()[counted].to(log_q.dtype)
    log_q_rest = log_q.scatter(-1, idx, float("-inf")).logsumexp(-1, keepdim=True)  # -inf when k = V
    log_q_buckets = torch.cat([log_q.gather(-1, idx), log_q_rest], dim=-1)
    log_q_buckets = log_q_buckets.clamp_min(torch.finfo(log_q.dtype).min)  # an empty rest: 0 * -inf
    log_p_buckets = torch.cat([log_p, log_p_rest.unsqueeze(-1)], dim=-1)
    return _token_mean(_kl(log_p_buckets, log_q_buckets)) * temperature**2
