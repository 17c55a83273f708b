import math

import pytest
import torch

from mmfunmatch.evaluation import TeacherAgreement


def test_agreement_on_crafted_logits():
    teacher = torch.tensor([
        [5., 0., 0., 0., 0., 0.],  # top-1 0
        [0., 5., 0., 0., 0., 0.],  # top-1 1
        [0., 0., 5., 0., 0., 0.],  # top-1 2
        [0., 0., 0., 0., 0., 5.],  # top-1 5
    ])
    student = torch.tensor([
        [5., 0., 0., 0., 0., 0.],  # agrees
        [0., 1., 5., -1., -1., -1.],  # disagrees, teacher's class in top-5
        [0., 0., 5., 0., 0., 0.],  # agrees
        [6., 5., 4., 3., 2., 0.],  # teacher's class 5 ranks last: not top-5
    ])
    metric = TeacherAgreement()
    metric.process({}, [
        dict(student_logits=s, teacher_logits=t)
        for s, t in zip(student, teacher)
    ])
    out = metric.compute_metrics(metric.results)
    assert out['agreement'] == pytest.approx(50.0)
    assert out['teacher_top1_in_student_top5'] == pytest.approx(75.0)
    # Rows 0 and 2 match exactly: KL 0. Others by hand.
    def kl(t, s):
        pt = torch.softmax(t, 0)
        return (pt * (pt.log() - torch.log_softmax(s, 0))).sum().item()
    expected = (kl(teacher[1], student[1]) + kl(teacher[3], student[3])) / 4
    # KLs of a few nats from logits of at most 6: float32 rounding is ~1e-7
    # relative here, on any CPU.
    assert out['kl'] == pytest.approx(expected, rel=1e-5)
    assert not math.isnan(out['kl'])


def test_needs_teacher_logits():
    with pytest.raises(KeyError, match='FunMatchDistiller'):
        TeacherAgreement().process({}, [dict(student_logits=torch.zeros(3))])
