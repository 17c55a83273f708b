import contextlib
import copy
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmfunmatch.models.data_preprocessors import FunMatchDataPreprocessor
from mmfunmatch.models.penultimate import (feature_width, record_features,
                                           teacher_feature_keys)
from mmfunmatch.models.teacher_spec import TeacherSpec, teacher_specs
from mmfunmatch.models.weights import load_weights
from mmfunmatch.registry import register_in_mmrazor
from mmfunmatch.utils import one_hot_labels, output_logits

TEACHER_PREFIX = 'teachers.'
COMBINE_MODES = ('mean_logits', 'mean_probs', 'sum_kl')
_DTYPES = {None: None, 'fp32': None, 'bf16': torch.bfloat16,
           'fp16': torch.float16}


def num_classes_of(model: nn.Module) -> Optional[int]:
    """The number of output classes of an mmpretrain or timm classifier."""
    for owner in (getattr(model, 'head', None), model,
                  getattr(model, 'model', None)):
        n = getattr(owner, 'num_classes', None)
        if isinstance(n, int):
            return n
    return None


def combine_teachers(logits: Sequence[torch.Tensor], mode: str,
                     tau: float = 1.0) -> torch.Tensor:
    """One target from several teachers' logits.

    'mean_logits' averages the logits (the paper's ensemble teacher).
    'mean_probs' returns logits whose tempered softmax equals the mean of the
    teachers' tempered softmaxes, so the KL loss sees the probability-space
    ensemble.
    """
    stacked = torch.stack([t.float() for t in logits])
    if len(logits) == 1:
        return stacked[0]
    if mode == 'mean_logits':
        return stacked.mean(0)
    if mode == 'mean_probs':
        log_mean = torch.logsumexp(
            F.log_softmax(stacked / tau, dim=-1), dim=0) - torch.log(
                torch.tensor(float(len(logits))))
        return tau * log_mean
    raise ValueError(f'unknown teacher combination {mode!r}')


@register_in_mmrazor
@MODELS.register_module()
class FunMatchDistiller(BaseModel):
    """Distil one or several frozen teachers into a student by function
    matching.

    Each step the teachers (eval mode, no gradient, no loss of their own) give
    logits for exactly the images the student sees (their own resolution and
    normalisation, same crop, same mixup), and the student is trained on the
    KL divergence to them. Teachers are never handed to the optimizer and
    never written into checkpoints: they are loaded from their own weight
    files on build, so a resumed run reloads them the same way.

    Args:
        student (dict): Config of the student, any mmpretrain classifier.
        teachers (Sequence[dict] | dict): One spec per teacher (a list, or a
            dict of named teachers, which config inheritance merges by name;
            see :class:`~mmfunmatch.models.teacher_spec.TeacherSpec`):
            ``model`` (an mmpretrain classifier config, ``TimmClassifier``
            included), ``checkpoint`` (a weight file, or None for random
            weights: tests only), and optionally ``mean``, ``std`` (0-255
            RGB) and ``size`` (its input size).
        distill_loss (dict): Loss between student and target logits.
            Defaults to ``dict(type='KLDivergenceT', tau=1.0)``.
        teacher_combine (str): 'mean_logits', 'mean_probs' or 'sum_kl' (sum of
            per-teacher losses, as big_vision does). Defaults to
            'mean_logits'.
        label_loss (dict, optional): A loss on ground-truth labels (mixed
            scores when mixup is on), added to the distillation loss. Off by
            default: labels are then only monitored.
        feature_loss (dict, optional): A loss on the penultimate features,
            added beside the KL term, e.g. ``dict(type='SRDLoss')``. The
            student's and each teacher's features (the input of their
            classifier layer) are recorded in the forward passes that give
            the logits, on the same views. It is called as
            ``loss(student_feats, [teacher_feats, ...])``; its widths
            (``student_channels``, ``teacher_channels``) are filled in from
            the models when not given and checked when given. Its
            parameters (SRD's projector) train with the student and are
            checkpointed, not exported. Needs a forward of every teacher
            each step (not with stored targets). Defaults to None.
        student_checkpoint (str, optional): Initialise the student from this
            weight file (paper section 3.5). Defaults to None.
        teacher_dtype (str, optional): 'bf16' or 'fp16' runs the teachers
            under autocast; the loss stays fp32. Defaults to None (fp32).
        channels_last (bool): Put the teachers and their inputs in channels
            last memory format. Defaults to False.
        compile_teachers (bool): ``torch.compile`` the teachers' forward.
            Defaults to False.
        cache_val_teacher (bool): Compute the teachers' logits on each
            validation image once per run (val views are deterministic).
            Defaults to True.
        data_preprocessor (dict, optional): Defaults to
            ``FunMatchDataPreprocessor``; teacher statistics missing from it
            are filled in from ``teachers``.
        init_cfg (dict, optional): Initialisation config of the student.
    """

    def __init__(self,
                 student: dict,
                 teachers: Union[Sequence[dict], Dict[str, dict]],
                 distill_loss: dict = dict(type='KLDivergenceT', tau=1.0),
                 teacher_combine: str = 'mean_logits',
                 label_loss: Optional[dict] = None,
                 feature_loss: Optional[dict] = None,
                 student_checkpoint: Optional[str] = None,
                 teacher_dtype: Optional[str] = None,
                 channels_last: bool = False,
                 compile_teachers: bool = False,
                 cache_val_teacher: bool = True,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        if not teachers:
            raise ValueError('FunMatchDistiller needs at least one teacher')
        if teacher_combine not in COMBINE_MODES:
            raise ValueError(f'teacher_combine must be one of {COMBINE_MODES}'
                             f', got {teacher_combine!r}')
        if teacher_dtype not in _DTYPES:
            raise ValueError(f'teacher_dtype must be one of '
                             f'{list(_DTYPES)}, got {teacher_dtype!r}')
        specs = teacher_specs(copy.deepcopy(teachers))
        super().__init__(
            data_preprocessor=self._preprocessor_cfg(data_preprocessor,
                                                     specs),
            init_cfg=init_cfg)

        self.student = MODELS.build(student)
        self.teacher_keys = [spec.key for spec in specs]
        self.teachers = nn.ModuleList()
        for spec in specs:
            teacher = MODELS.build(spec.model)
            if spec.checkpoint:
                load_weights(teacher, spec.checkpoint, name=spec.key)
            elif hasattr(teacher, 'init_weights'):
                teacher.init_weights()
            if channels_last:
                teacher = teacher.to(memory_format=torch.channels_last)
            teacher.requires_grad_(False)
            teacher.eval()
            self.teachers.append(teacher)
        self._check_class_counts()

        self.distill_loss = MODELS.build(distill_loss)
        if (getattr(self.distill_loss, 'loss_weight', 1.0) == 0
                and type(self) is FunMatchDistiller):
            raise ValueError(
                'FunMatchDistiller: distill_loss.loss_weight is 0, so the '
                'student would learn nothing from the teacher; for the '
                'label-only baseline use type="LabelOnlyStudent" (its '
                'teachers are kept for validation only).')
        self.label_loss = MODELS.build(label_loss) if label_loss else None
        if feature_loss and compile_teachers:
            raise ValueError(
                'FunMatchDistiller: feature_loss records features with '
                'forward hooks, which torch.compile\'d teachers do not run '
                'reliably; set compile_teachers=False or remove '
                'feature_loss.')
        self.feature_loss = (self._build_feature_loss(feature_loss)
                             if feature_loss else None)
        self.teacher_combine = teacher_combine
        self.student_checkpoint = student_checkpoint
        self.teacher_dtype = _DTYPES[teacher_dtype]
        self.channels_last = channels_last
        self.cache_val_teacher = cache_val_teacher
        self._val_cache: Dict[str, torch.Tensor] = {}
        self._teacher_fns = [
            torch.compile(t) if compile_teachers else t for t in self.teachers
        ]
        # Teachers are rebuilt from their own files; keep them out of
        # checkpoints (torch's and mmengine's state_dict both run this hook)
        # and do not report them missing when loading one.
        self._register_state_dict_hook(_drop_teacher_keys)
        self.register_load_state_dict_post_hook(_ignore_missing_teachers)

    @staticmethod
    def _preprocessor_cfg(cfg: Optional[dict],
                          specs: List[TeacherSpec]) -> dict:
        """The preprocessor normalises each teacher's view with the mean,
        std and size written in that teacher's spec."""
        cfg = dict(type=FunMatchDataPreprocessor) if cfg is None else dict(cfg)
        if cfg.get('type', 'FunMatchDataPreprocessor') in (
                'FunMatchDataPreprocessor', FunMatchDataPreprocessor):
            cfg['type'] = FunMatchDataPreprocessor
            cfg.setdefault('teachers', [spec.view for spec in specs])
        return cfg

    def _check_class_counts(self) -> None:
        n_student = num_classes_of(self.student)
        for i, teacher in enumerate(self.teachers):
            n_teacher = num_classes_of(teacher)
            if None not in (n_student, n_teacher) and n_student != n_teacher:
                raise ValueError(
                    f'{self.teacher_keys[i]} predicts {n_teacher} classes but '
                    f'the student {n_student}; function matching needs the '
                    f'same classes. Set the student head num_classes='
                    f'{n_teacher} (or use a teacher fine-tuned on your '
                    f'classes).')

    def _build_feature_loss(self, cfg: dict) -> nn.Module:
        """The feature loss, its widths filled in from (or checked against)
        the student's and the teachers' classifier layers."""
        cfg = dict(cfg)
        student = feature_width(self.student)
        teachers = [feature_width(t) for t in self.teachers]
        if cfg.get('student_channels') is None:
            cfg['student_channels'] = student
        if cfg.get('teacher_channels') is None:
            cfg['teacher_channels'] = teachers
        elif isinstance(cfg['teacher_channels'], int):
            cfg['teacher_channels'] = ([cfg['teacher_channels']] *
                                       len(teachers))
        if cfg['student_channels'] != student:
            raise ValueError(
                f'feature_loss declares student_channels='
                f'{cfg["student_channels"]} but the student\'s penultimate '
                f'features (its classifier layer\'s input) are {student} '
                f'wide; set student_channels={student} or leave it out.')
        if list(cfg['teacher_channels']) != teachers:
            raise ValueError(
                f'feature_loss declares teacher_channels='
                f'{list(cfg["teacher_channels"])} but the penultimate '
                f'features of the teachers {self.teacher_keys} are '
                f'{teachers} wide; set teacher_channels={teachers} or leave '
                f'it out.')
        return MODELS.build(cfg)

    def trainable_modules(self) -> List[nn.Module]:
        """What the optimizer trains: the student, and the feature loss's
        projector when there is one (FunMatchOptimWrapperConstructor)."""
        modules = [self.student]
        if self.feature_loss is not None and any(
                True for _ in self.feature_loss.parameters()):
            modules.append(self.feature_loss)
        return modules

    # -- weights ---------------------------------------------------------------
    def init_weights(self) -> None:
        """Initialise the student only; the teachers keep their weights."""
        if hasattr(self.student, 'init_weights'):
            self.student.init_weights()
        if self.student_checkpoint:
            load_weights(self.student, self.student_checkpoint,
                         name='student')
            print_log(f'student initialised from {self.student_checkpoint}',
                      logger='current')

    def train(self, mode: bool = True) -> 'FunMatchDistiller':
        super().train(mode)
        self.teachers.eval()  # teachers stay in eval mode, always
        return self

    # -- forward ---------------------------------------------------------------
    def _split(self, inputs: Union[dict, torch.Tensor]
               ) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        if isinstance(inputs, dict):
            return inputs['student'], list(inputs['teachers'])
        return inputs, [inputs] * len(self.teachers)

    def teacher_logits(self, views: Sequence[torch.Tensor]
                       ) -> List[torch.Tensor]:
        """Each teacher's fp32 logits for its view, without autograd."""
        outs = []
        with torch.inference_mode():
            for fn, view in zip(self._teacher_fns, views):
                if self.channels_last:
                    view = view.contiguous(memory_format=torch.channels_last)
                with torch.autocast(
                        view.device.type,
                        dtype=self.teacher_dtype or torch.float32,
                        enabled=self.teacher_dtype is not None):
                    outs.append(output_logits(fn(view, mode='tensor')).float())
        # Inference tensors cannot be saved for the student's backward pass.
        return [o.clone() for o in outs]

    def student_logits(self, view: torch.Tensor) -> torch.Tensor:
        """The student's logits for its view (with autograd)."""
        return output_logits(self.student(view, mode='tensor'))

    def forward(self,
                inputs: Union[dict, torch.Tensor],
                data_samples: Optional[List[DataSample]] = None,
                mode: str = 'tensor'):
        """MMEngine's three modes: 'loss' (:meth:`loss`, training),
        'predict' (:meth:`predict`, validation) and 'tensor' (the student's
        logits, e.g. for export or FLOP counting)."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.student_logits(self._split(inputs)[0])
        raise RuntimeError(f'Invalid mode "{mode}".')

    def loss(self, inputs: Union[dict, torch.Tensor],
             data_samples: Optional[List[DataSample]] = None) -> dict:
        """One function-matching step, in the order of the method:

        1. views: ``inputs`` holds the student's view and each teacher's view
           of the same crop, already normalised for its model and mixed by
           the one mixup draw (``FunMatchDataPreprocessor``);
        2. targets: each frozen teacher's logits on its own view
           (:meth:`teacher_targets`, no gradient);
        3. the student's logits on its view (with ``feature_loss``, steps 2
           and 3 also record each model's penultimate features: no extra
           forward);
        4. the loss: ``T^2 KL(target || student)`` at the loss's temperature
           (per teacher and summed for ``teacher_combine='sum_kl'``, else on
           the combined target), the monitors (entropies, agreement, label
           cross-entropy) and, when configured, a label loss and the feature
           loss.
        """
        student_view, teacher_views = self._split(inputs)
        with self._recording_features() as features:
            t_logits = self.teacher_targets(teacher_views, data_samples)
            s_logits = self.student_logits(student_view)
        if self.teacher_combine == 'sum_kl':
            loss = sum(self.distill_loss(s_logits, t) for t in t_logits)
            target = combine_teachers(t_logits, 'mean_logits')
        else:
            target = combine_teachers(t_logits, self.teacher_combine,
                                      getattr(self.distill_loss, 'tau', 1.0))
            loss = self.distill_loss(s_logits, target)
        losses = dict(loss_distill=loss)
        losses.update(_monitors(s_logits, target))
        losses.update(self._label_losses(s_logits, data_samples))
        losses.update(self._feature_losses(features))
        return losses

    def _recording_features(self):
        """Records the penultimate features of the student and of every
        teacher while the block runs (nothing without a feature loss)."""
        if self.feature_loss is None:
            return contextlib.nullcontext({})
        keys = teacher_feature_keys(len(self.teachers))
        models = dict(zip(keys, self.teachers))
        models['student'] = self.student
        return record_features(models)

    def _feature_losses(self, features: Dict[str, torch.Tensor]) -> dict:
        """The feature loss on the features recorded in this step."""
        if self.feature_loss is None:
            return {}
        keys = teacher_feature_keys(len(self.teachers))
        missing = [self.teacher_keys[i] for i, k in enumerate(keys)
                   if k not in features]
        if missing:
            raise RuntimeError(
                f'{type(self).__name__}: feature_loss needs the penultimate '
                f'features of every teacher on this step\'s views, but '
                f'{missing} did not run ({type(self).__name__}.'
                f'teacher_targets returned targets without a teacher '
                f'forward, e.g. stored ones). Remove feature_loss, or run '
                f'the teachers.')
        # Teacher features come from inference mode: clone them into
        # ordinary tensors that autograd may save (as teacher_logits does).
        teachers = [features[k].clone().float() for k in keys]
        return dict(loss_feature=self.feature_loss(features['student'],
                                                   teachers))

    def teacher_targets(self, views: Sequence[torch.Tensor],
                        data_samples: Optional[List[DataSample]] = None
                        ) -> List[torch.Tensor]:
        """The targets of one step: each teacher's logits on its view."""
        return self.teacher_logits(views)

    def _label_losses(self, s_logits: torch.Tensor,
                      data_samples: Optional[List[DataSample]],
                      required: bool = False) -> dict:
        """The optional label loss and the label cross-entropy monitor."""
        scores = _label_scores(data_samples, s_logits.size(1))
        if scores is None:
            if self.label_loss is not None or required:
                raise ValueError(
                    'a label loss is needed (label_loss set, or the '
                    'LabelOnlyStudent baseline) but the training samples '
                    'carry no labels; use a labelled train set or remove '
                    'label_loss (function matching needs no labels).')
            return {}
        scores = scores.to(s_logits.device)
        losses = dict(label_ce=-(scores * F.log_softmax(s_logits.float(), 1)
                                 ).sum(1).mean().detach())
        if self.label_loss is not None:
            losses['loss_label'] = self.label_loss(s_logits, scores)
        elif required:
            raise ValueError('no label_loss is set: nothing to train on.')
        return losses

    def predict(self, inputs: Union[dict, torch.Tensor],
                data_samples: Optional[List[DataSample]] = None
                ) -> List[DataSample]:
        """The student's prediction per sample, with the student's and the
        (combined) teachers' logits attached for ``TeacherAgreement``."""
        student_in, teacher_ins = self._split(inputs)
        s_logits = self.student_logits(student_in).float()
        if data_samples is None:
            data_samples = [DataSample() for _ in range(s_logits.size(0))]
        t_logits = self._val_teacher_logits(teacher_ins, data_samples)
        scores = F.softmax(s_logits, dim=1)
        for i, sample in enumerate(data_samples):
            sample.set_pred_score(scores[i]).set_pred_label(
                scores[i].argmax(0, keepdim=True))
            sample.set_field(s_logits[i], 'student_logits')
            sample.set_field(t_logits[i], 'teacher_logits')
        return data_samples

    def _val_teacher_logits(self, views: List[torch.Tensor],
                            data_samples: List[DataSample]) -> torch.Tensor:
        keys = [_sample_key(s) for s in data_samples]
        usable = self.cache_val_teacher and None not in keys
        if usable and all(k in self._val_cache for k in keys):
            return torch.stack([self._val_cache[k] for k in keys]).to(
                views[0].device)
        target = combine_teachers(self.teacher_logits(views),
                                  'mean_probs' if self.teacher_combine
                                  == 'sum_kl' else self.teacher_combine)
        if usable:
            for k, row in zip(keys, target.cpu()):
                self._val_cache[k] = row
        return target


def _monitors(s_logits: torch.Tensor, target: torch.Tensor) -> dict:
    """Logged beside the loss: both entropies and top-1 agreement."""
    with torch.no_grad():
        return dict(student_entropy=_entropy(s_logits),
                    teacher_entropy=_entropy(target),
                    agreement=(s_logits.argmax(1) == target.argmax(1)
                               ).float().mean())


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * logp).sum(1).mean()


def _label_scores(data_samples: Optional[List[DataSample]],
                  num_classes: int) -> Optional[torch.Tensor]:
    """Mixed scores, or one-hot labels, or None for unlabelled samples."""
    if not data_samples:
        return None
    if all('gt_score' in s for s in data_samples):
        return torch.stack([s.gt_score for s in data_samples]).float()
    return one_hot_labels(data_samples, num_classes)


def _sample_key(sample: DataSample) -> Optional[str]:
    path, idx = sample.get('img_path'), sample.get('sample_idx')
    if path is None and idx is None:
        return None
    return f'{path}|{idx}'


def _drop_teacher_keys(module, state_dict, prefix, local_metadata):
    for key in [k for k in state_dict if k.startswith(prefix + TEACHER_PREFIX)]:
        del state_dict[key]


def _ignore_missing_teachers(module, incompatible_keys):
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not k.startswith(TEACHER_PREFIX)]
