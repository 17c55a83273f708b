from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS


def agreement_stats(student_logits: torch.Tensor,
                    teacher_logits: torch.Tensor) -> dict:
    """Agreement of student with teacher on a batch of logits (N, C).

    Returns top-1 agreement, the fraction of samples whose teacher top-1 is
    in the student's top-5 (both in %), and mean KL(teacher || student) at
    temperature 1.
    """
    s = student_logits.float()
    t = teacher_logits.float()
    t_top1 = t.argmax(1)
    k = min(5, s.size(1))
    top5 = s.topk(k, dim=1).indices
    log_s, log_t = F.log_softmax(s, 1), F.log_softmax(t, 1)
    kl = (log_t.exp() * (log_t - log_s)).sum(1)
    return dict(
        agreement=(s.argmax(1) == t_top1).float().mean().item() * 100,
        teacher_top1_in_student_top5=(top5 == t_top1[:, None]).any(1)
        .float().mean().item() * 100,
        kl=kl.mean().item())


@METRICS.register_module()
class TeacherAgreement(BaseMetric):
    """How closely the student matches the teacher: what function matching
    optimises.

    Reads the ``student_logits`` and ``teacher_logits`` that
    ``FunMatchDistiller.predict`` attaches to each sample.

    Args:
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Metric name prefix. Defaults to 'teacher'.
    """
    default_prefix: Optional[str] = 'teacher'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'teacher_logits' not in sample:
                raise KeyError(
                    'TeacherAgreement needs teacher_logits in the predictions;'
                    ' evaluate a FunMatchDistiller (an exported student alone '
                    'has no teacher).')
            self.results.append((sample['student_logits'].cpu(),
                                 sample['teacher_logits'].cpu()))

    def compute_metrics(self, results: List) -> dict:
        student = torch.stack([r[0] for r in results])
        teacher = torch.stack([r[1] for r in results])
        return agreement_stats(student, teacher)
