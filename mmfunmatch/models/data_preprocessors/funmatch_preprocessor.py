from typing import List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from mmpretrain.registry import BATCH_AUGMENTS, MODELS

Number = Union[int, float]


def _stack(views: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
    """A batch tensor from a collated tensor or a list of CHW tensors."""
    if isinstance(views, torch.Tensor):
        return views
    return torch.stack(list(views))


def _normaliser(mean: Sequence[Number], std: Sequence[Number]):
    return (torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1),
            torch.tensor(std, dtype=torch.float32).view(-1, 1, 1))


@MODELS.register_module()
class FunMatchDataPreprocessor(BaseDataPreprocessor):
    """Normalise every model's view with its own statistics, then mix all
    views with one draw of the batch augment.

    Inputs come either as ``dict(student=..., teachers=[...])`` (from
    ``PackFunMatchInputs``) or as a plain batch (mmpretrain's ``PackInputs``,
    e.g. at validation). For a plain batch the teacher views are made from
    the student's raw view, resized to each teacher's size when it differs.
    The output is always ``dict(student=Tensor, teachers=[Tensor, ...])``.

    Args:
        mean (Sequence[Number]): Student pixel mean (RGB, 0-255 scale).
        std (Sequence[Number]): Student pixel std.
        teachers (Sequence[dict]): One dict per teacher with ``mean``,
            ``std`` and optionally ``size`` (int or (h, w)).
            Defaults to ().
        to_rgb (bool): Flip BGR (as decoded by OpenCV) to RGB.
            Defaults to True.
        batch_augments (dict, optional): A batch augment config, applied
            in training only, e.g. ``dict(type='UniformMixup')``.
        num_classes (int, optional): Used to turn labels into scores that are
            mixed with the images (only needed for a label loss).
    """

    def __init__(self,
                 mean: Sequence[Number] = (127.5, 127.5, 127.5),
                 std: Sequence[Number] = (127.5, 127.5, 127.5),
                 teachers: Sequence[dict] = (),
                 to_rgb: bool = True,
                 batch_augments: Optional[dict] = None,
                 num_classes: Optional[int] = None) -> None:
        super().__init__()
        s_mean, s_std = _normaliser(mean, std)
        self.register_buffer('mean', s_mean, False)
        self.register_buffer('std', s_std, False)
        self.teacher_sizes: List[Optional[tuple]] = []
        for i, t in enumerate(teachers):
            t_mean, t_std = _normaliser(t.get('mean', mean), t.get('std', std))
            self.register_buffer(f'teacher_mean_{i}', t_mean, False)
            self.register_buffer(f'teacher_std_{i}', t_std, False)
            size = t.get('size')
            self.teacher_sizes.append(
                None if size is None else
                ((size, size) if isinstance(size, int) else tuple(size)))
        self.num_teachers = len(teachers)
        self.to_rgb = to_rgb
        self.num_classes = num_classes
        self.batch_augment = (
            BATCH_AUGMENTS.build(batch_augments)
            if isinstance(batch_augments, dict) else batch_augments)

    # The batch augment's random generator travels in the model's state dict
    # (``data_preprocessor._extra_state``), so every checkpoint carries it and
    # a resumed run draws the same mixup weights, with no hook to configure.
    # A tensor (empty without a stateful augment), because mmengine moves
    # every state-dict value to the CPU when it saves.
    def get_extra_state(self) -> torch.Tensor:
        if hasattr(self.batch_augment, 'get_rng_state'):
            return self.batch_augment.get_rng_state()
        return torch.empty(0, dtype=torch.uint8)

    def set_extra_state(self, state: torch.Tensor) -> None:
        if state.numel() and hasattr(self.batch_augment, 'set_rng_state'):
            self.batch_augment.set_rng_state(state.cpu())

    def _normalise(self, x: torch.Tensor, mean: torch.Tensor,
                   std: torch.Tensor) -> torch.Tensor:
        if self.to_rgb and x.size(1) == 3:
            x = x.flip(1)
        return (x.float() - mean) / std

    def _teacher_stats(self, i: int):
        return (getattr(self, f'teacher_mean_{i}'),
                getattr(self, f'teacher_std_{i}'))

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        data_samples = data.get('data_samples')
        if isinstance(inputs, dict):
            student_raw = _stack(inputs['student'])
            teacher_raws = [_stack(t) for t in inputs.get('teachers', [])]
            if len(teacher_raws) != self.num_teachers:
                raise ValueError(
                    f'FunMatchDataPreprocessor: got {len(teacher_raws)} '
                    f'teacher views for {self.num_teachers} teachers; give '
                    f'ConsistentView one teacher size per teacher.')
        else:
            student_raw = _stack(inputs)
            teacher_raws = [None] * self.num_teachers

        student = self._normalise(student_raw, self.mean, self.std)
        teachers = []
        for i, raw in enumerate(teacher_raws):
            mean, std = self._teacher_stats(i)
            if raw is None:
                raw = student_raw.float()
                size = self.teacher_sizes[i]
                if size is not None and tuple(raw.shape[-2:]) != size:
                    raw = F.interpolate(
                        raw, size=size, mode='bilinear', align_corners=False,
                        antialias=True)
            teachers.append(self._normalise(raw, mean, std))

        if training and self.batch_augment is not None:
            scores = self._label_scores(data_samples, student.device)
            views, scores = self.batch_augment([student] + teachers, scores)
            student, teachers = views[0], list(views[1:])
            if scores is not None:
                for sample, score in zip(data_samples, scores):
                    sample.set_gt_score(score)
        return dict(
            inputs=dict(student=student, teachers=teachers),
            data_samples=data_samples)

    def _label_scores(self, data_samples, device) -> Optional[torch.Tensor]:
        """One-hot scores to mix alongside the images, when labels exist."""
        if (self.num_classes is None or not data_samples
                or not all('gt_label' in s for s in data_samples)):
            return None
        labels = torch.cat([s.gt_label for s in data_samples]).to(device)
        if (labels < 0).any():
            return None
        return F.one_hot(labels, self.num_classes).float()
