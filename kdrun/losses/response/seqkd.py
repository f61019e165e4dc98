"""seqkd: Kim & Rush, "Sequence-Level Knowledge Distillation" (EMNLP 2016).

Word-level KD matches the teacher's next-token distribution at every position of the
corpus; sequence-level KD instead trains the student, by plain cross-entropy, on the
sequences the teacher itself produces, approximating the teacher's distribution over
whole sequences by its mode. Here each training sequence keeps its first `prompt_tokens`
tokens and the teacher continues it to the sequence length, once per cell and cached
(kdrun/cache/generations.py); the engine's LM objective swaps each batch for those
sequences and this term is the student's cross-entropy on the generated tokens (the
prompt is not scored). The paper decodes with beam search (beam 5); `decoding=greedy` is
its beam-1 case, `sample` draws at `temperature` instead. The label cross-entropy on the
corpus is off (ce_scale 0): the teacher's sequences replace the corpus targets, as in
the paper's Seq-KD; combine with loss=kd for its Seq-Inter style mixture.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from kdrun.config.bounds import bounded
from kdrun.config.errors import ConfigError
from kdrun.losses.base import DistillationLoss, LossConfig
from kdrun.losses.registry import register_loss
from kdrun.losses.tokens import token_ce

DECODINGS = ("greedy", "sample")


@dataclass
class SeqKDConfig(LossConfig):
    weight: float = bounded(1.0, gt=0)
    # the tokens of each training sequence the teacher continues from (not scored)
    prompt_tokens: int = bounded(16, ge=1, why="and fewer than data.seq_len")
    decoding: str = "greedy"          # greedy (beam search with beam 1) | sample
    temperature: float = bounded(1.0, gt=0)   # sample only


@register_loss
class SeqKD(DistillationLoss):
    name = "seqkd"
    config = SeqKDConfig
    tasks: ClassVar[tuple[str, ...]] = ("lm",)
    teacher_targets: ClassVar[bool] = True   # the LM objective swaps batches for teacher text

    @classmethod
    def validate(cls, cfg):
        super().validate(cfg)
        if cfg.decoding not in DECODINGS:
            raise ConfigError(f"{cls.key('decoding')}={cfg.decoding}: use greedy or sample")

    @classmethod
    def ce_scale(cls, cfg):
        return 0.0

    def forward(self, student, teacher, batch):
        return {"seqkd": self.cfg.weight * token_ce(student.logits, batch.y)}
