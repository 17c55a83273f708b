"""The two baselines beside function matching: LabelOnlyStudent (labels,
no teacher forward in training) and the refusal that points to it."""
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from tests.models.test_funmatch_distiller import batch, distiller_cfg


def test_label_only_student_trains_on_labels_without_the_teacher():
    model = MODELS.build(distiller_cfg(
        type='LabelOnlyStudent', data_preprocessor=dict(
            type='FunMatchDataPreprocessor', mean=[100.] * 3, std=[50.] * 3,
            num_classes=10)))
    calls = []
    model.teachers[0].register_forward_hook(lambda *a: calls.append(1))
    data = model.data_preprocessor(batch(), True)
    losses = model.loss(**data)
    assert calls == []
    assert set(losses) == {'loss_label', 'label_ce'}
    # The default label loss is the soft cross-entropy on the labels.
    logits = model.student_logits(data['inputs']['student'])
    labels = torch.tensor([i % 10 for i in range(4)])
    expected = F.cross_entropy(logits, labels)
    assert losses['loss_label'].item() == pytest.approx(expected.item(),
                                                        rel=1e-5)
    # Validation still reports the teacher's logits for agreement.
    model.eval()
    with torch.no_grad():
        preds = model.predict(**model.data_preprocessor(batch(), False))
    assert 'teacher_logits' in preds[0]


def test_label_only_student_needs_labels():
    model = MODELS.build(distiller_cfg(type='LabelOnlyStudent'))
    data = model.data_preprocessor(batch(labels=False), True)
    with pytest.raises(ValueError, match='carry no labels'):
        model.loss(**data)


def test_label_only_student_refuses_a_feature_loss():
    with pytest.raises(ValueError, match='feature_loss would be ignored'):
        MODELS.build(distiller_cfg(type='LabelOnlyStudent',
                                   feature_loss=dict(type='SRDLoss')))


def test_zero_distillation_weight_points_to_the_baseline():
    with pytest.raises(ValueError, match='LabelOnlyStudent'):
        MODELS.build(distiller_cfg(distill_loss=dict(
            type='KLDivergenceT', tau=1.0, loss_weight=0.0)))


def test_teacher_views_must_match_the_teachers():
    model = MODELS.build(distiller_cfg(n_teachers=2))
    with pytest.raises(ValueError, match='1 teacher views for 2 teachers'):
        model.data_preprocessor(batch(), True)  # one teacher view
