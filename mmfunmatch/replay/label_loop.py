"""The labelling run: the training loop of a function-matching config, with
the teachers' forward in place of the training step."""
import glob
import os
import os.path as osp
import time
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.dist import all_reduce, barrier, get_dist_info
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import LOOPS
from mmengine.runner import EpochBasedTrainLoop

from mmfunmatch.datasets.stored_teacher import sample_key
from mmfunmatch.models.algorithms.funmatch_distiller import (
    FunMatchDistiller, num_classes_of)
from .store import (ReplayStore, ReplayStoreError, check_precision,
                    encode_targets)
from .views import drawn_views, run_fingerprint


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


@LOOPS.register_module()
class TeacherLabelLoop(EpochBasedTrainLoop):
    """Draw every training view of ``max_epochs`` epochs exactly as training
    draws them (the same sampler, ``ExactResumeHook`` seeding, hooks,
    ``ConsistentView`` and ``FunMatchDataPreprocessor`` with its mixup) and
    write the teachers' targets for them into a :class:`ReplayStore`, one
    shard per epoch and process. Built by ``tools/label_teacher.py``.

    Only the step differs from training: the preprocessed batch goes to the
    teachers (``FunMatchDistiller.teacher_targets``, inference mode) and the
    student is never run. A rerun continues at the first epoch without
    shards (on every process), with the same bytes as an uninterrupted run.
    Then the teachers' val logits are stored once.

    Args:
        runner, dataloader, max_epochs: As ``EpochBasedTrainLoop``;
            ``max_epochs`` is the number of epochs to label.
        store (str): The store folder.
        precision (str): 'fp32', 'fp16' or 'topk'. Defaults to 'fp32'.
        topk (int, optional): Classes kept per view with 'topk'.
    """

    def __init__(self, runner, dataloader, max_epochs: int, store: str,
                 precision: str = 'fp32', topk: Optional[int] = None,
                 **kwargs) -> None:
        super().__init__(runner, dataloader, max_epochs, **kwargs)
        check_precision(precision, topk)
        self.store = ReplayStore(store)
        self.precision = precision
        self.topk = topk if precision == 'topk' else None
        self._rows: List[Dict[str, np.ndarray]] = []
        self._targets: List[torch.Tensor] = []

    @property
    def model(self) -> FunMatchDistiller:
        model = unwrap(self.runner.model)
        if not isinstance(model, FunMatchDistiller) or (
                type(model).teacher_targets
                is not FunMatchDistiller.teacher_targets):
            raise ReplayStoreError(
                f'the labelling run needs a function-matching config '
                f'(model.type="FunMatchDistiller": the teachers run on the '
                f'training views); got {type(model).__name__}.')
        return model

    def _open_store(self, fingerprint: dict, rank: int, world: int) -> None:
        model = self.model
        num_classes = (num_classes_of(model.student)
                       or num_classes_of(model.teachers[0]))
        check_precision(self.precision, self.topk, num_classes)
        settings = dict(precision=self.precision, topk=self.topk,
                        num_classes=num_classes,
                        teacher_keys=list(model.teacher_keys),
                        world_size=world,
                        batch_size=self.dataloader.batch_size)
        if rank == 0:
            # What a kill while writing leaves (no shard is ever half
            # written: they appear by rename).
            for stale in glob.glob(osp.join(self.store.root, '*.tmp')):
                os.remove(stale)
            if self.store.exists():
                manifest = self.store.manifest
                self.store.check_fingerprint(fingerprint)
                old = {k: manifest.get(k) for k in settings}
                if old != settings:
                    raise ReplayStoreError(
                        f'the replay store {self.store.root!r} was labelled '
                        f'with {old}; this run asks for {settings}. Label '
                        f'into a new folder.')
                epochs = max(int(manifest['epochs']), self.max_epochs)
            else:
                epochs = self.max_epochs
            self.store.write_manifest(
                dict(settings, epochs=epochs, fingerprint=fingerprint))
        barrier()
        self.store._manifest = None
        self.store.check_fingerprint(fingerprint)  # every process

    def _first_missing_epoch(self, rank: int) -> int:
        epoch = 0
        while epoch < self.max_epochs and self.store.has_shard(epoch, rank):
            epoch += 1
        first = torch.tensor([epoch], dtype=torch.int64)
        all_reduce(first, op='min')
        return int(first.item())

    def run(self) -> torch.nn.Module:
        self.runner.call_hook('before_train')
        rank, world = get_dist_info()
        fingerprint = run_fingerprint(self.runner.cfg, self.dataloader, world)
        self._open_store(fingerprint, rank, world)
        start = self._first_missing_epoch(rank)
        if start:
            print_log(f'replay store {self.store.root}: epochs 0 to '
                      f'{start - 1} are labelled; continuing at epoch '
                      f'{start}.', logger='current')
        # Position the loop as a resume at the start of that epoch would:
        # the sampler, the per-sample seeds and the mixup step follow.
        self._epoch, self._iter = start, start * len(self.dataloader)
        while self._epoch < self._max_epochs:
            self.run_epoch()
        self._label_val(rank)
        self.runner.call_hook('after_train')
        return self.runner.model

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        self._rows, self._targets = [], []
        start = time.perf_counter()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        rank, _ = get_dist_info()
        arrays = {k: np.concatenate([r[k] for r in self._rows])
                  for k in self._rows[0]}
        arrays.update(encode_targets(torch.cat(self._targets),
                                     self.precision, self.topk))
        path = self.store.write_shard(self._epoch, rank, arrays)
        seconds = time.perf_counter() - start
        print_log(f'labelled epoch {self._epoch + 1}/{self._max_epochs}: '
                  f'{len(arrays["position"])} views in {seconds:.1f} s '
                  f'({len(arrays["position"]) / seconds:.1f} views/s) -> '
                  f'{path}', logger='current')
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1

    def run_iter(self, idx: int, data_batch) -> None:
        self.runner.call_hook('before_train_iter', batch_idx=idx,
                              data_batch=data_batch)
        model = self.model
        rank, world = get_dist_info()
        data = model.data_preprocessor(data_batch, True)
        samples = data['data_samples']
        targets = model.teacher_targets(data['inputs']['teachers'], samples)
        self._targets.append(torch.stack(targets, 1).cpu())
        step = self._iter - self._epoch * len(self.dataloader)
        self._rows.append(drawn_views(
            samples, model.data_preprocessor.batch_augment, step, rank,
            world))
        self.runner.call_hook('after_train_iter', batch_idx=idx,
                              data_batch=data_batch, outputs=dict())
        self._iter += 1

    @torch.no_grad()
    def _label_val(self, rank: int) -> None:
        """The teachers' logits on this process's val images, once."""
        val_loop = self.runner.val_loop
        if val_loop is None or not hasattr(val_loop, 'dataloader'):
            return
        shard, _ = self.store.val_paths(rank)
        if osp.isfile(shard):
            return
        model = self.model
        model.eval()
        root = getattr(val_loop.dataloader.dataset, 'data_root', None)
        idx, logits, keys = [], [], []
        for batch in val_loop.dataloader:
            data = model.data_preprocessor(batch, False)
            out = model.teacher_logits(data['inputs']['teachers'])
            logits.append(torch.stack(out, 1).cpu())
            for s in data['data_samples']:
                idx.append(int(s.metainfo['sample_idx']))
                keys.append(sample_key(s.metainfo['img_path'], root))
        self.store.write_val(rank, np.asarray(idx),
                             torch.cat(logits).numpy(), keys)
        print_log(f'stored the teachers\' logits on {len(idx)} val images',
                  logger='current')
