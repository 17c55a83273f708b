"""Function matching from a replay store: the student trains on the views
the labelling run drew, against the targets it stored; no teacher runs."""
import copy
import os
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from mmfunmatch.models.algorithms.funmatch_distiller import (
    FunMatchDistiller, combine_teachers)
from mmfunmatch.models.teacher_spec import teacher_specs
from mmfunmatch.registry import register_in_mmrazor
from .store import ReplayStore, ReplayStoreError, decode_targets
from .views import check_views, drawn_views


@MODELS.register_module()
class ReplayedTeacher(nn.Module):
    """Stands in for a teacher whose outputs come from a replay store.

    With ``build`` it constructs the real teacher once (random weights, no
    weight file read) and drops it: building consumes the global random
    generator, so the student's initialisation, drawn afterwards, is the
    one the online run with the same seed gets.

    Args:
        model (dict): The teacher's model config.
        num_classes (int): Its classes (the store's).
        build (bool): Construct it once, as above. Defaults to True.
        init (bool): Also run its ``init_weights`` (the online run does
            when the teacher has no weight file). Defaults to False.
    """

    def __init__(self, model: dict, num_classes: int, build: bool = True,
                 init: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self._pending = [MODELS.build(model)] if build else []
        self._init = init

    def init_weights(self) -> None:
        if self._pending and self._init and hasattr(self._pending[0],
                                                    'init_weights'):
            self._pending[0].init_weights()
        self._pending = []

    def forward(self, *args, **kwargs):
        raise ReplayStoreError(
            'a replayed teacher has no weights: its outputs come from the '
            'replay store (this view is not in it).')


@register_in_mmrazor
@MODELS.register_module()
class ReplayDistiller(FunMatchDistiller):
    """:class:`FunMatchDistiller` whose teacher targets are read from a
    replay store (``tools/label_teacher.py``) instead of computed.

    The data path is the online one (sampler, ``ExactResumeHook`` seeding,
    ``ConsistentView``, ``UniformMixup``), rendering the student's view only;
    each step checks that the drawn views (sample, crop box, flip, mixup
    weight and partner) equal the stored ones, then trains on the stored
    targets. With full-precision targets the student ends bitwise equal to
    the online run. Needs ``custom_hooks=[dict(type='ReplayStoreHook')]``,
    which checks the config against the store before the first step.
    Temperature and teacher combination apply at loss time: one store
    serves a temperature sweep.

    Takes :class:`FunMatchDistiller`'s Args (``teachers`` as in the online
    config: their files are hashed, not loaded) and:

    Args:
        store (str): The replay store folder.
        cycle (bool): Train past the stored epochs by reusing them in turn
            (epoch e replays stored epoch e mod E). Defaults to False
            (refused).
        match_online_init (bool): Construct each teacher once without its
            weights so that the student starts as online (see
            :class:`ReplayedTeacher`). Defaults to True.
    """

    def __init__(self,
                 student: dict,
                 teachers,
                 store: str,
                 cycle: bool = False,
                 match_online_init: bool = True,
                 **kwargs) -> None:
        replay = ReplayStore(store)
        num_classes = replay.num_classes
        stand_ins = _stand_ins(teachers, num_classes, match_online_init)
        kwargs['compile_teachers'] = False
        super().__init__(student, stand_ins, **kwargs)
        self.replay = replay
        self.cycle = cycle
        self.teacher_files = {
            spec.key: spec.checkpoint
            for spec in teacher_specs(copy.deepcopy(teachers))
        }
        self._position: Optional[tuple] = None
        self._shard_epoch: Optional[tuple] = None
        self._shard: Dict[str, np.ndarray] = {}
        self._val: Optional[dict] = None

    @staticmethod
    def _preprocessor_cfg(cfg, specs):
        cfg = FunMatchDistiller._preprocessor_cfg(cfg, specs)
        if 'student_only' not in cfg:
            cfg['student_only'] = True  # no teacher view is normalised
        return cfg

    def set_replay_position(self, epoch: int, step: int, rank: int,
                            world_size: int) -> None:
        """The stored epoch and step the next batch replays (set by
        ``ReplayStoreHook`` before each iteration)."""
        self._position = (epoch, step, rank, world_size)

    def _shard_of(self, epoch: int, rank: int) -> Dict[str, np.ndarray]:
        if self._shard_epoch != (epoch, rank):
            self._shard = self.replay.read_shard(epoch, rank)
            self._shard_epoch = (epoch, rank)
        return self._shard

    def teacher_targets(self, views: Sequence[torch.Tensor],
                        data_samples: Optional[List[DataSample]] = None
                        ) -> List[torch.Tensor]:
        """The stored targets of this step, one (N, C) tensor per teacher,
        after checking the batch's views are the stored ones."""
        if self._position is None:
            raise ReplayStoreError(
                'ReplayDistiller does not know which stored step this batch '
                'is: add custom_hooks=[dict(type="ReplayStoreHook")] to the '
                'config.')
        epoch, step, rank, world = self._position
        shard = self._shard_of(epoch, rank)
        n = len(data_samples)
        rows = slice(step * n, (step + 1) * n)
        if rows.stop > len(shard['position']):
            raise ReplayStoreError(
                f'stored epoch {epoch} (rank {rank}) holds '
                f'{len(shard["position"])} views; step {step} needs rows '
                f'{rows.start} to {rows.stop - 1}.')
        drawn = drawn_views(data_samples, self.data_preprocessor.batch_augment,
                            step, rank, world)
        check_views(shard, rows, drawn,
                    f'stored epoch {epoch}, step {step}, rank {rank}')
        device = next(self.student.parameters()).device
        target = decode_targets(shard, rows, self.replay.num_classes)
        return list(target.to(device).unbind(1))

    def _val_teacher_logits(self, views: List[torch.Tensor],
                            data_samples: List[DataSample]) -> torch.Tensor:
        """The stored val logits of these images, combined as online."""
        if self._val is None:
            self._val = self.replay.read_val()
        rows = []
        for s in data_samples:
            idx, path = int(s.get('sample_idx', -1)), s.get('img_path', '')
            entry = self._val.get(idx)
            if entry is None or not path.replace(os.sep, '/').endswith(
                    entry[0]):
                raise ReplayStoreError(
                    f'the replay store {self.replay.root!r} holds no '
                    f'teacher val logits for {path!r} (val index {idx}): '
                    f'it was labelled with another val set. Label the '
                    f'store with this val_dataloader.')
            rows.append(entry[1])
        per_teacher = torch.stack(rows).to(views[0].device if views else
                                           next(self.student.parameters())
                                           .device).unbind(1)
        mode = ('mean_probs' if self.teacher_combine == 'sum_kl' else
                self.teacher_combine)
        return combine_teachers(list(per_teacher), mode)


def _stand_ins(teachers, num_classes: int, build: bool):
    """The teachers' config with each model replaced by a
    :class:`ReplayedTeacher` (same keys, views and order; no weight file)."""
    specs = teacher_specs(copy.deepcopy(teachers))
    entries = []
    for spec in specs:
        entry = dict(spec.view)
        entry['model'] = dict(type='ReplayedTeacher', model=spec.model,
                              num_classes=num_classes, build=build,
                              init=not spec.checkpoint)
        entries.append(entry)
    if isinstance(teachers, Mapping):
        return dict(zip(teachers.keys(), entries))
    return entries
