from typing import Any, Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseDataPreprocessor
from mmpretrain.registry import BATCH_AUGMENTS, MODELS

from mmfunmatch.utils import one_hot_labels, to_hw

Number = Union[int, float]


def _stack(views: Union[torch.Tensor, Sequence[torch.Tensor]]) -> torch.Tensor:
    """A batch tensor from a collated tensor or a list of CHW tensors."""
    if isinstance(views, torch.Tensor):
        return views
    return torch.stack(list(views))


def _view_index(view: Any, teacher: int) -> Optional[int]:
    """The view a teacher reads when its entry is a reference (see
    ``PackFunMatchInputs``), else None (its own pixels).

    A reference is an int per sample: a list of ints after
    ``pseudo_collate``, an integer tensor of shape (N,) after
    ``default_collate``; a view is a CHW/NCHW tensor or a list of CHW ones.
    """
    if isinstance(view, int):
        indices = [view]
    elif isinstance(view, torch.Tensor):
        if view.dim() > 1 or view.is_floating_point():
            return None
        indices = view.reshape(-1).tolist()
    elif (isinstance(view, (list, tuple)) and view
          and all(isinstance(v, int) for v in view)):
        indices = list(view)
    else:
        return None
    if not indices or any(i != indices[0] for i in indices):
        raise ValueError(
            f'FunMatchDataPreprocessor: the samples of this batch disagree '
            f'on which view teacher {teacher} reads ({sorted(set(indices))})'
            f'; build every sample with the same ConsistentView and '
            f'PackFunMatchInputs.')
    return int(indices[0])


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

    A teacher entry may be a reference to an earlier view that holds the
    same pixels (``PackFunMatchInputs`` packs equal views once):
    :meth:`cast_data` moves each distinct view to the device once and then
    hands every model its view, shared views as one tensor. Each model
    still gets its own mean/std.

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
        student_only (bool): Ignore teacher views and give none (a replay
            run, whose targets are stored). Defaults to False.
    """

    def __init__(self,
                 mean: Sequence[Number] = (127.5, 127.5, 127.5),
                 std: Sequence[Number] = (127.5, 127.5, 127.5),
                 teachers: Sequence[dict] = (),
                 to_rgb: bool = True,
                 batch_augments: Optional[dict] = None,
                 num_classes: Optional[int] = None,
                 student_only: bool = False) -> None:
        super().__init__()
        self.student_only = student_only
        s_mean, s_std = _normaliser(mean, std)
        self.register_buffer('mean', s_mean, False)
        self.register_buffer('std', s_std, False)
        self.teacher_sizes: List[Optional[tuple]] = []
        for i, t in enumerate(teachers):
            t_mean, t_std = _normaliser(t.get('mean', mean), t.get('std', std))
            self.register_buffer(f'teacher_mean_{i}', t_mean, False)
            self.register_buffer(f'teacher_std_{i}', t_std, False)
            size = t.get('size')
            self.teacher_sizes.append(None if size is None else to_hw(size))
        self.num_teachers = 0 if student_only else len(teachers)
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

    def cast_data(self, data: Any) -> Any:
        """Move the batch to the device, then resolve shared views.

        The result has one tensor (or list of CHW tensors) per model in
        ``inputs['teachers']``, as when every view was packed separately;
        views packed once are one tensor shared by the models reading them.
        """
        data = super().cast_data(data)
        inputs = data.get('inputs') if isinstance(data, dict) else None
        if isinstance(inputs, dict) and inputs.get('teachers'):
            data = dict(data, inputs=dict(
                inputs, **self._resolve_views(inputs)))
        return data

    @staticmethod
    def _resolve_views(inputs: dict) -> dict:
        # views[0] is the student's, views[k + 1] teacher k's.
        views = [inputs['student']]
        for i, view in enumerate(inputs['teachers']):
            index = _view_index(view, i)
            if index is not None:
                if not 0 <= index <= i:
                    raise ValueError(
                        f'FunMatchDataPreprocessor: teacher {i} reads view '
                        f'{index}, but only views 0 (student) to {i} come '
                        f'before it; pack the batch with PackFunMatchInputs.')
                # Stacked once, so that the models share one tensor.
                views[index] = _stack(views[index])
                view = views[index]
            views.append(view)
        return dict(student=views[0], teachers=views[1:])

    def _to_float(self, x: torch.Tensor) -> torch.Tensor:
        if self.to_rgb and x.size(1) == 3:
            x = x.flip(1)
        return x.float()

    def _normalise(self, x: torch.Tensor, mean: torch.Tensor,
                   std: torch.Tensor) -> torch.Tensor:
        return (self._to_float(x) - mean) / std

    def _teacher_stats(self, i: int):
        return (getattr(self, f'teacher_mean_{i}'),
                getattr(self, f'teacher_std_{i}'))

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        data_samples = data.get('data_samples')
        if isinstance(inputs, dict):
            student_raw = _stack(inputs['student'])
            teacher_raws = [] if self.student_only else [
                _stack(t) for t in inputs.get('teachers', [])]
            if len(teacher_raws) != self.num_teachers:
                raise ValueError(
                    f'FunMatchDataPreprocessor: got {len(teacher_raws)} '
                    f'teacher views for {self.num_teachers} teachers; give '
                    f'ConsistentView one teacher size per teacher.')
        else:
            student_raw = _stack(inputs)
            teacher_raws = [None] * self.num_teachers

        # A shared raw view is flipped to RGB and cast once; each model then
        # applies its own mean/std.
        as_float: Dict[int, torch.Tensor] = {}

        def shared_float(raw: torch.Tensor) -> torch.Tensor:
            if id(raw) not in as_float:
                as_float[id(raw)] = self._to_float(raw)
            return as_float[id(raw)]

        student = (shared_float(student_raw) - self.mean) / self.std
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
            else:
                teachers.append((shared_float(raw) - mean) / std)

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
        if self.num_classes is None:
            return None
        scores = one_hot_labels(data_samples, self.num_classes)
        return None if scores is None else scores.to(device)
