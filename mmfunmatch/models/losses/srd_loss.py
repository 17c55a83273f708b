"""SRD's feature term (Miles & Mikolajczyk, "Understanding the role of the
projector in knowledge distillation", AAAI 2024).

Distillation as function matching plus metric learning on the penultimate
representation: a trainable linear projector maps the student's features to
the teacher's width, the teacher's features are normalised by a batch norm
without affine parameters, and the distance between the two is a soft
maximum of their absolute differences, ``log(sum |p(s) - bn(t)|^exponent)``
over the batch and the features (as torchdistill's ``SRDLoss`` computes it,
which its docstring says follows the authors' code).
:class:`~mmfunmatch.models.algorithms.FunMatchDistiller` adds it beside the
KL term with ``feature_loss=dict(type='SRDLoss', ...)``.
"""
from typing import List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmpretrain.registry import MODELS

from mmfunmatch.registry import register_in_mmrazor


def soft_max_distance(student: torch.Tensor, teacher: torch.Tensor,
                      exponent: float = 1.0, eps: float = 0.) -> torch.Tensor:
    """``log(eps + sum |student - teacher|^exponent)``, in fp32.

    With ``exponent`` 1 this is the log of the L1 distance over the batch;
    larger exponents weigh the largest differences more (``log(sum|d|^p) / p``
    tends to ``log max|d|``), which is what tames a large capacity gap.
    """
    diff = (student.float() - teacher.float()).abs()
    return torch.log(diff.pow(exponent).sum() + eps)


@register_in_mmrazor
@MODELS.register_module()
class SRDLoss(nn.Module):
    """SRD's feature distillation term, with its projector.

    ``loss_weight * mean_over_teachers(log(eps + sum |W s + b - BN(t)|^p))``
    where ``s`` is the student's penultimate features (N, Cs), ``t`` a
    teacher's (N, Ct), ``W, b`` a trainable linear projector (Cs -> Ct) and
    ``BN`` a batch norm without affine parameters (batch statistics in
    training, running ones in eval; the running statistics are checkpointed).
    The teacher side is detached.

    Several teachers: one projector and one normalisation per teacher (the
    student's features are matched to each teacher's own space), and the
    per-teacher terms are averaged, so the term's scale does not grow with
    the number of teachers.

    The projector trains with the student (the distiller hands it to the
    optimizer) and is saved in checkpoints; it is not part of the exported
    student.

    Args:
        student_channels (int, optional): Width of the student's penultimate
            features. None: filled in by the distiller from the student's
            classifier layer. A declared width is checked against it.
        teacher_channels (int | Sequence[int], optional): Width of each
            teacher's penultimate features (one int per teacher, or one int
            for all). None: filled in by the distiller.
        exponent (float): ``p`` of the soft maximum distance. Defaults to
            1.0 (torchdistill's default).
        normalize_teacher (bool): Batch-normalise (no affine) the teacher's
            features. Defaults to True.
        projector_bias (bool): Give the projector a bias. Defaults to True.
        loss_weight (float): Multiplier of the term. Defaults to 2.0, the
            factor torchdistill's SRDLoss puts on it beside a KL term of
            weight 1.
        eps (float): Added inside the log, so identical features give a
            finite loss. Defaults to 1e-8.
    """

    def __init__(self,
                 student_channels: Optional[int] = None,
                 teacher_channels: Union[int, Sequence[int], None] = None,
                 exponent: float = 1.0,
                 normalize_teacher: bool = True,
                 projector_bias: bool = True,
                 loss_weight: float = 2.0,
                 eps: float = 1e-8) -> None:
        super().__init__()
        if student_channels is None or teacher_channels is None:
            raise ValueError(
                'SRDLoss needs student_channels and teacher_channels; inside '
                'FunMatchDistiller(feature_loss=...) they are filled in from '
                'the models, elsewhere give them.')
        if not exponent > 0:
            raise ValueError(f'SRDLoss: exponent must be > 0, got {exponent}')
        if isinstance(teacher_channels, int):
            teacher_channels = [teacher_channels]
        self.student_channels = int(student_channels)
        self.teacher_channels: List[int] = [int(c) for c in teacher_channels]
        self.exponent = float(exponent)
        self.loss_weight = float(loss_weight)
        self.eps = float(eps)
        self.projectors = nn.ModuleList(
            nn.Linear(self.student_channels, c, bias=projector_bias)
            for c in self.teacher_channels)
        self.teacher_norms = nn.ModuleList(
            nn.BatchNorm1d(c, affine=False) if normalize_teacher else
            nn.Identity() for c in self.teacher_channels)

    def forward(self, student: torch.Tensor,
                teachers: Sequence[torch.Tensor]) -> torch.Tensor:
        """The term for the student's features ``student`` (N, Cs) and each
        teacher's features ``teachers[i]`` (N, Ct_i)."""
        if len(teachers) != len(self.projectors):
            raise ValueError(
                f'SRDLoss has {len(self.projectors)} projector(s) '
                f'(teacher_channels={self.teacher_channels}) but got the '
                f'features of {len(teachers)} teacher(s); give one width per '
                f'teacher.')
        if student.dim() != 2 or student.size(1) != self.student_channels:
            raise ValueError(
                f'SRDLoss: the projector takes {self.student_channels} '
                f'student features but the student gives '
                f'{tuple(student.shape)}; set student_channels='
                f'{student.size(-1)}.')
        terms = []
        for i, (proj, norm, t) in enumerate(
                zip(self.projectors, self.teacher_norms, teachers)):
            if t.dim() != 2 or t.size(1) != self.teacher_channels[i]:
                raise ValueError(
                    f'SRDLoss: the projector for teacher {i} gives '
                    f'{self.teacher_channels[i]} features but that teacher '
                    f'gives {tuple(t.shape)}; set its teacher_channels to '
                    f'{t.size(-1)}.')
            target = norm(t.detach().float())
            terms.append(soft_max_distance(proj(student.float()), target,
                                           self.exponent, self.eps))
        return self.loss_weight * torch.stack(terms).mean()
