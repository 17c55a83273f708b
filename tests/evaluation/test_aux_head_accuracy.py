"""AuxHeadAccuracy (mmfunmatch/evaluation/metrics/aux_head_accuracy.py):
each auxiliary head's top-1 against a count by hand."""
import pytest
import torch

from mmfunmatch.evaluation.metrics import AuxHeadAccuracy


def test_each_head_top1_by_hand():
    # 4 samples, 2 heads, 3 classes; labels 0, 1, 2, 0.
    labels = [0, 1, 2, 0]
    head_preds = [[0, 1], [1, 1], [0, 2], [0, 2]]  # per sample: head1, head2
    samples = []
    for label, preds in zip(labels, head_preds):
        logits = torch.zeros(2, 3)
        for h, p in enumerate(preds):
            logits[h, p] = 1.
        samples.append(dict(aux_logits=logits,
                            gt_label=torch.tensor([label])))
    metric = AuxHeadAccuracy()
    metric.process(None, samples)
    # head 1 right on samples 0, 1, 3 (3/4); head 2 on samples 1, 2 (2/4).
    assert metric.compute_metrics(metric.results) == dict(
        head1_top1=75.0, head2_top1=50.0)


def test_predictions_without_aux_logits_say_what_to_evaluate():
    with pytest.raises(KeyError, match='evaluate a BYOTClassifier'):
        AuxHeadAccuracy().process(None, [dict(gt_label=torch.tensor([0]))])
