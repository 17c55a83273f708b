from typing import List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS


@METRICS.register_module()
class AuxHeadAccuracy(BaseMetric):
    """Top-1 accuracy (%) of each auxiliary head of a self-distilled network.

    Reads the ``aux_logits`` (heads x classes) that
    ``BYOTClassifier.predict`` attaches to each sample; reports ``head1``
    (the shallowest) ... ``headK``. The deepest head is the network's own
    prediction, reported by ``Accuracy``.

    Args:
        collect_device (str): 'cpu' or 'gpu'. Defaults to 'cpu'.
        prefix (str, optional): Metric name prefix. Defaults to 'aux'.
    """
    default_prefix: Optional[str] = 'aux'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'aux_logits' not in sample:
                raise KeyError(
                    'AuxHeadAccuracy needs aux_logits in the predictions; '
                    'evaluate a BYOTClassifier (an exported network has no '
                    'auxiliary heads).')
            self.results.append((sample['aux_logits'].cpu().argmax(-1),
                                 sample['gt_label'].cpu().reshape(())))

    def compute_metrics(self, results: List) -> dict:
        preds = torch.stack([r[0] for r in results])  # (N, heads)
        labels = torch.stack([r[1] for r in results])
        correct = (preds == labels[:, None]).float().mean(0) * 100
        return {f'head{i + 1}_top1': v.item() for i, v in enumerate(correct)}
