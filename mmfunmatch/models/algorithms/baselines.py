"""The two baselines that are not function matching, as small subclasses of
:class:`FunMatchDistiller`, so that they share its student, teachers,
validation and checkpoints and differ only where they differ."""
from typing import List, Optional, Sequence, Union

import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmfunmatch.datasets.stored_teacher import STORED_KEY
from mmfunmatch.registry import register_in_mmrazor
from .funmatch_distiller import FunMatchDistiller


@register_in_mmrazor
@MODELS.register_module()
class LabelOnlyStudent(FunMatchDistiller):
    """The student trained from ground-truth labels alone.

    The teachers are built (from their weight files) only so that validation
    reports the student's agreement with them; no teacher runs in training.
    Takes :class:`FunMatchDistiller`'s Args; ``distill_loss`` is not used.

    Args:
        label_loss (dict): Loss on the labels (mixed scores when the batch
            augment mixes them). Defaults to a soft cross-entropy.
    """

    def __init__(self,
                 *args,
                 label_loss: dict = dict(
                     type='CrossEntropyLoss', use_soft=True, loss_weight=1.0),
                 **kwargs) -> None:
        if kwargs.get('feature_loss'):
            # No teacher runs in training, so a feature term would never be
            # computed while its projector sat in the optimizer.
            raise ValueError(
                'LabelOnlyStudent trains from labels alone and runs no '
                'teacher, so feature_loss would be ignored: remove '
                'model.feature_loss, or use FunMatchDistiller for KL + SRD.')
        super().__init__(*args, label_loss=label_loss, **kwargs)

    def loss(self, inputs: Union[dict, torch.Tensor],
             data_samples: Optional[List[DataSample]] = None) -> dict:
        """The label loss on the student's view; no teacher forward."""
        student_view, _ = self._split(inputs)
        s_logits = self.student_logits(student_view)
        return self._label_losses(s_logits, data_samples, required=True)


@register_in_mmrazor
@MODELS.register_module()
class StoredTargetDistiller(FunMatchDistiller):
    """The paper's ``fix/ic_ens`` baseline: the target of an image is stored
    once (``tools/precompute_teacher.py``: the teacher's mean prediction
    over many inception crops) and served with it by
    ``StoredTeacherDataset``, whatever view the student gets. Inconsistent
    on purpose; validation still runs the teachers on the val views.
    Takes :class:`FunMatchDistiller`'s Args.
    """

    def teacher_targets(self, views: Sequence[torch.Tensor],
                        data_samples: Optional[List[DataSample]] = None
                        ) -> List[torch.Tensor]:
        """The stored logits of the batch's images (one target)."""
        if not data_samples or not all(STORED_KEY in s for s in data_samples):
            raise ValueError(
                f'StoredTargetDistiller: the training samples carry no '
                f'stored "{STORED_KEY}"; wrap the train set in '
                f'StoredTeacherDataset and pack the key with '
                f'dict(type="PackFunMatchInputs", '
                f'algorithm_keys=["{STORED_KEY}"]).')
        device = next(self.student.parameters()).device
        return [torch.stack([torch.as_tensor(s.get(STORED_KEY))
                             for s in data_samples]).float().to(device)]
