"""Bitwise-exact resume, mid-epoch included, also on another number of
processes at the same global batch.

mmengine 0.10.7 resumes an ``EpochBasedTrainLoop`` at the start of the
checkpoint's epoch: a checkpoint written mid-epoch makes the resumed run
train the already-seen batches of that epoch again. ``IterBasedTrainLoop``
instead replays the dataloader for every finished iteration: it decodes and
augments all past data again (hours to days into a thousand-epoch run on a
small data set). Random state is not saved at all: the seed is re-applied on
resume, so a resumed run draws different crops and dropout masks than the
uninterrupted one, and dataloader workers restart their random streams.

:class:`ExactResumeHook` makes every random draw of training a pure function
of its position, so nothing but the position has to be saved:

- the epoch's global order (mmengine's shuffle, which does not depend on
  the number of processes) is laid out in steps of G = W x B samples (W
  processes, B per process), and rank r takes the contiguous block
  [t G + r B, t G + (r + 1) B) of step t (mmengine's samplers deal out
  every W-th index instead). Each sample's pipeline is seeded from (seed,
  epoch, global position), whichever worker, rank or process loads it. So
  step t holds the same samples in the same global slots, with the same
  crops, for 1 x 32 and 2 x 16 processes;
- ``UniformMixup`` is told the step and the position of the rank's first
  sample before every step: its weights and (with ``group_size``) its
  pairs are then those of a single process with the whole global batch;
- python's, numpy's and torch's generators of the training process are
  seeded from (seed, iteration) before every step;
- on resume, the sampler skips the batches of the current epoch that the
  checkpoint already trained; for an ``IterBasedTrainLoop`` with mmengine's
  ``InfiniteSampler`` it starts at the checkpoint's position in the index
  stream, and mmengine's replay of past iterations loads no data;
- checkpoints record the global batch, per-process batch, process count,
  mixup group size and epoch length; a resume with another global batch is
  refused before the first step, with the ways to continue.

The mixup state (seed, step) is part of the model's state dict
(``FunMatchDataPreprocessor``); model, optimizer, schedulers and iteration
counters are saved by mmengine.
"""
import copy
import itertools
import random
from typing import Iterator, List, Optional

import numpy as np
import torch
from mmengine.dataset import DefaultSampler, InfiniteSampler
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator
from torch.utils.data import BatchSampler, Sampler

_DATA_STREAM = 0
_STEP_STREAM = 1
_STREAM_DATA_STREAM = 2  # IterBasedTrainLoop + InfiniteSampler


def derive_seed(*entropy: int) -> int:
    """A 32-bit seed that depends on every number in ``entropy``."""
    sequence = np.random.SeedSequence([int(e) for e in entropy])
    return int(sequence.generate_state(1, np.uint32)[0])


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class SeededIndex(int):
    """A dataset index that carries the seed for its sample's pipeline.

    It reaches the pipeline as ``results['sample_idx']`` (mmengine's
    ``BaseDataset.get_data_info`` stores the index it was given there), where
    :class:`SeedFromPosition` reads it and turns it back into a plain int.
    """

    def __new__(cls, value: int, seed: int) -> 'SeededIndex':
        obj = super().__new__(cls, value)
        obj.seed = seed
        return obj

    def __reduce__(self):  # workers receive indices pickled
        return SeededIndex, (int(self), self.seed)


class SeedFromPosition:
    """First step of a training pipeline: seed the worker's generators from
    the sample's :class:`SeededIndex`. Inserted by :class:`ExactResumeHook`.
    """

    def __call__(self, results: dict) -> dict:
        idx = results.get('sample_idx')
        seed = getattr(idx, 'seed', None)
        if seed is not None:
            results['sample_idx'] = int(idx)
            seed_everything(seed)
        return results

    def __repr__(self) -> str:
        return 'SeedFromPosition()'


class PositionSampler(Sampler):
    """Wraps a sampler: yields its indices as :class:`SeededIndex` and can
    start one given epoch part-way through.

    For mmengine's ``DefaultSampler`` it lays the epoch out in steps of the
    global batch ``G = world_size x batch_size`` and yields rank r's block
    [t G + r B, t G + (r + 1) B) of every step t, each index seeded by its
    global position: the samples of a step, their slots and their seeds do
    not depend on the number of processes. The epoch's global order is the
    wrapped sampler's own shuffle for one process, cut (``drop_last``) or
    padded by repetition (as ``round_up`` pads) to the same number of steps
    the wrapped sampler gives. Other samplers keep their indices, seeded by
    (rank, index in the rank's sequence).

    Args:
        sampler (Sampler): The wrapped per-rank sampler.
        seed (int): The run's base seed.
        batch_size (int): Samples per process and step. Defaults to 1.
        drop_last (bool): Whether the batch sampler drops a last partial
            batch. Defaults to False.
    """

    def __init__(self, sampler: Sampler, seed: int, batch_size: int = 1,
                 drop_last: bool = False) -> None:
        self.sampler = sampler
        self.seed = seed
        self.batch_size = batch_size
        self.drop_last = drop_last
        rank, world_size = get_dist_info()
        self.rank = getattr(sampler, 'rank', rank)
        self.world_size = getattr(sampler, 'world_size', world_size)
        self.global_positions = type(sampler) is DefaultSampler
        self._skip_epoch: Optional[int] = None
        self._skip = 0

    @property
    def epoch(self) -> int:
        return int(getattr(self.sampler, 'epoch', 0))

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)

    def skip(self, epoch: int, num_samples: int) -> None:
        """Leave out the first ``num_samples`` indices of ``epoch``."""
        self._skip_epoch, self._skip = epoch, num_samples

    def _start(self) -> int:
        return self._skip if self.epoch == self._skip_epoch else 0

    def steps(self) -> int:
        """Steps per epoch: those of the wrapped sampler's batches."""
        n, b = len(self.sampler), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _rank_samples(self) -> int:
        if self.global_positions:
            return self.steps() * self.batch_size
        return len(self.sampler)

    def global_order(self) -> List[int]:
        """The epoch's indices in global order, one step after another."""
        whole = copy.copy(self.sampler)  # the same shuffle, as one process
        whole.rank, whole.world_size, whole.round_up = 0, 1, True
        whole.total_size = self.steps() * self.batch_size * self.world_size
        return list(whole)

    def __iter__(self) -> Iterator[SeededIndex]:
        epoch, start = self.epoch, self._start()
        if not self.global_positions:
            for j, idx in enumerate(self.sampler):
                if j >= start:
                    yield SeededIndex(idx, derive_seed(
                        self.seed, _DATA_STREAM, epoch, self.rank, j))
            return
        order, b = self.global_order(), self.batch_size
        for j in range(start, self._rank_samples()):
            p = block_position(j, self.rank, b, self.world_size)
            yield SeededIndex(order[p],
                              derive_seed(self.seed, _DATA_STREAM, epoch, p))

    def __len__(self) -> int:
        return max(self._rank_samples() - self._start(), 0)


def block_position(j: int, rank: int, batch_size: int,
                   world_size: int) -> int:
    """Global position of rank ``rank``'s ``j``-th sample when every step's
    global batch is dealt out in contiguous per-rank blocks."""
    step, k = divmod(j, batch_size)
    return (step * world_size + rank) * batch_size + k


class StreamSampler(Sampler):
    """Wraps mmengine's ``InfiniteSampler``: its infinite index stream (which
    does not depend on the number of processes) dealt out in steps of the
    global batch, rank r taking the block [t G + r B, t G + (r + 1) B) of
    step t, as :class:`SeededIndex` seeded by global position, and starting
    ``start`` of the rank's indices in (found by generating indices, not
    data).

    Args:
        sampler (InfiniteSampler): The wrapped sampler.
        seed (int): The run's base seed.
        start (int): Per-rank indices to skip (a multiple of
            ``batch_size``). Defaults to 0.
        batch_size (int): Samples per process and step. Defaults to 1.
    """

    def __init__(self, sampler: InfiniteSampler, seed: int,
                 start: int = 0, batch_size: int = 1) -> None:
        self.sampler = sampler
        self.seed = seed
        self.start = start
        self.batch_size = batch_size
        self._stream: Optional[Iterator[SeededIndex]] = None

    def _generate(self) -> Iterator[SeededIndex]:
        rank, world = self.sampler.rank, self.sampler.world_size
        b = self.batch_size
        indices = self.sampler._infinite_indices()  # a fresh global stream
        first = block_position(self.start, rank, b, world)
        indices = itertools.islice(indices, first - first % (b * world), None)
        j = self.start
        while True:
            block = list(itertools.islice(indices, b * world))[
                rank * b:(rank + 1) * b]
            for idx in block:
                yield SeededIndex(
                    idx, derive_seed(self.seed, _STREAM_DATA_STREAM,
                                     block_position(j, rank, b, world)))
                j += 1

    def __iter__(self) -> Iterator[SeededIndex]:
        # Like InfiniteSampler: a second iteration continues the stream.
        if self._stream is None:
            self._stream = self._generate()
        return self._stream

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        pass


class _FastForward:
    """Answers the first ``skip`` ``next()`` calls with None (mmengine's
    ``IterBasedTrainLoop`` calls it once per finished iteration on resume and
    discards the result), then delegates."""

    def __init__(self, iterator, skip: int) -> None:
        self._iterator = iterator
        self._skip = skip

    def __iter__(self):
        return self

    def __next__(self):
        if self._skip > 0:
            self._skip -= 1
            return None
        return next(self._iterator)


def _stop_workers(iterator) -> None:
    """Shut down the workers of a started dataloader iterator (they were
    forked with the pipeline as it was, and prefetched from the sampler)."""
    inner = getattr(iterator, '_iterator', None)
    if hasattr(inner, '_shutdown_workers'):
        inner._shutdown_workers()


def _base_dataset(dataset):
    while not hasattr(dataset, 'pipeline') and hasattr(dataset, 'dataset'):
        dataset = dataset.dataset
    return dataset


def _batch_augments(runner) -> list:
    """The model's batch augments that take a position (``UniformMixup``):
    ``FunMatchDataPreprocessor.batch_augment`` or the augments of mmpretrain's
    ``ClsDataPreprocessor.batch_augments``."""
    model = getattr(runner.model, 'module', runner.model)
    pre = getattr(model, 'data_preprocessor', None)
    found = [getattr(pre, 'batch_augment', None)]
    found += list(getattr(getattr(pre, 'batch_augments', None), 'augments',
                          None) or [])
    return [a for a in found if hasattr(a, 'set_position')]


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make a resumed run bitwise identical to an uninterrupted one, also
    when the checkpoint was written in the middle of an epoch, and make its
    data and mixup draws those of the uninterrupted run when it resumes on
    another number of processes with the same global batch.

    Supports an ``EpochBasedTrainLoop`` with any sampler that has
    ``set_epoch`` (mmengine's ``DefaultSampler``: per-rank blocks of the
    global batch), and an ``IterBasedTrainLoop`` with mmengine's
    ``InfiniteSampler``, each batched by torch's ``BatchSampler`` (mmengine's
    default); otherwise it warns and only reseeds the steps. Bitwise equal
    weights also need deterministic kernels (``randomness.deterministic`` on
    GPU), the same number of threads and the same number of processes; on
    another number of processes the data and mixup draws stay bitwise, the
    weights differ by the summation order of the gradient average (and by
    per-rank BatchNorm statistics unless ``sync_bn`` is set).

    Checkpoints record ``meta['exact_resume']``: global batch, per-process
    batch, process count, mixup group size and epoch length. A resume with
    another global batch or group size is refused before the first step.

    Args:
        reseed_data (bool): Seed each training sample's pipeline from its
            position. Defaults to True.
        reseed_steps (bool): Seed the training process's generators from the
            iteration before each step. Defaults to True.
    """

    priority = 'VERY_HIGH'

    def __init__(self, reseed_data: bool = True,
                 reseed_steps: bool = True) -> None:
        self.reseed_data = reseed_data
        self.reseed_steps = reseed_steps
        self._step_rank = 0
        self._layout: Optional[dict] = None
        self._loaded_layout: Optional[dict] = None
        self._augments: list = []
        self._offset = 0

    # -- what a checkpoint records, and the check on resume ---------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # Also called for load_from without resume: checked in before_train
        # only when the run continues (runner.iter > 0).
        self._loaded_layout = checkpoint.get('meta', {}).get('exact_resume')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._layout is not None:
            checkpoint.setdefault('meta', {})['exact_resume'] = dict(
                self._layout)

    def _describe_layout(self, runner, loader) -> dict:
        _, world = get_dist_info()
        batch = getattr(loader.batch_sampler, 'batch_size', None)
        if batch is None:
            batch = loader.batch_size
        groups = {getattr(a, 'group_size', None) for a in self._augments}
        return dict(
            global_batch=batch * world, batch_size=batch, world_size=world,
            group_size=groups.pop() if len(groups) == 1 else None,
            epoch_length=(len(loader) if isinstance(
                runner.train_loop, EpochBasedTrainLoop) else None))

    def _check_resume(self, runner) -> None:
        old, new = self._loaded_layout, self._layout
        self._loaded_layout = None
        if not old or runner.iter == 0:
            return
        from mmfunmatch.apis.validate import ConfigError
        was = (f'{old["world_size"]} process(es) x {old["batch_size"]} = '
               f'{old["global_batch"]}')
        now = (f'{new["world_size"]} process(es) x {new["batch_size"]} = '
               f'{new["global_batch"]}')
        if old['global_batch'] != new['global_batch']:
            g, w = old['global_batch'], new['world_size']
            keep = (f'set train_dataloader.batch_size={g // w} (per '
                    f'process) with {w} process{"es" * (w != 1)}'
                    if g % w == 0 else
                    f'use a number of processes that divides {g} and '
                    f'train_dataloader.batch_size = {g} / processes')
            raise ConfigError(
                f'cannot resume at iteration {runner.iter}: the checkpoint '
                f'was trained with a global batch of {was}, this run has '
                f'{now}. To continue the run, keep the global batch: {keep}. '
                f'To train on with the new batch, start a new run from the '
                f'checkpoint\'s weights without --resume (--cfg-options '
                f'load_from=CHECKPOINT): the optimizer state, schedule and '
                f'data order then start afresh.')
        if old.get('group_size') != new.get('group_size'):
            raise ConfigError(
                f'cannot resume at iteration {runner.iter}: the checkpoint '
                f'mixed in groups of {old.get("group_size")} (UniformMixup '
                f'group_size; None: each process batch), this run in groups '
                f'of {new.get("group_size")}. Set model.data_preprocessor.'
                f'batch_augments.group_size={old.get("group_size")}.')
        if (old.get('epoch_length') and new.get('epoch_length')
                and old['epoch_length'] != new['epoch_length']):
            raise ConfigError(
                f'cannot resume at iteration {runner.iter}: the checkpoint\'s '
                f'epochs had {old["epoch_length"]} steps, this run\'s have '
                f'{new["epoch_length"]}: the data set or drop_last changed '
                f'since it was written. Restore them, or start a new run '
                f'from its weights (--cfg-options load_from=CHECKPOINT).')
        if old['world_size'] != new['world_size']:
            runner.logger.info(
                f'Resuming on {now} (checkpoint: {was}): the same global '
                f'batch, so the samples, crops and mixup weights of every '
                f'step are those of the uninterrupted run.')
            if self._augments and new.get('group_size') is None:
                runner.logger.warning(
                    'UniformMixup pairs within each process batch '
                    '(group_size=None), which changed with the number of '
                    'processes: the mixup partners differ from the '
                    'uninterrupted run from here on. Runs that may resume '
                    'on another number of processes set group_size to the '
                    'smallest per-process batch from the start.')

    # -- set-up -------------------------------------------------------------
    def before_train(self, runner) -> None:
        seed = runner.seed if runner.seed is not None else 0
        self._seed = seed
        diff_rank = runner._randomness_cfg.get('diff_rank_seed', False)
        rank = get_dist_info()[0]
        self._step_rank = rank if diff_rank else 0
        self._augments = _batch_augments(runner)
        loop = runner.train_loop
        loader = getattr(loop, 'dataloader', None)
        if loader is not None:
            sampler = getattr(loader.batch_sampler, 'sampler', None)
            if isinstance(sampler, PositionSampler):  # before_train again
                sampler.skip(None, 0)
            self._layout = self._describe_layout(runner, loader)
            self._offset = rank * self._layout['batch_size']
            for augment in self._augments:
                augment.set_position(runner.iter, self._offset)
                try:  # a group that spans processes: refused before a step
                    augment.partners(self._layout['batch_size'])
                except ValueError as err:
                    from mmfunmatch.apis.validate import ConfigError
                    raise ConfigError(str(err)) from None
            self._check_resume(runner)
        if isinstance(loop, IterBasedTrainLoop):
            self._setup_iter_loop(runner, loop)
            return
        if not isinstance(loop, EpochBasedTrainLoop):
            runner.logger.warning(
                f'ExactResumeHook: {type(loop).__name__} is not supported; '
                f'only steps are reseeded.')
            return
        batch_sampler = loader.batch_sampler
        if type(batch_sampler) is not BatchSampler:
            runner.logger.warning(
                f'ExactResumeHook: batch sampler {type(batch_sampler)} is '
                f'not torch BatchSampler; a mid-epoch resume restarts the '
                f'epoch (mmengine default) and data randomness is not '
                f'position-seeded.')
            return
        sampler = batch_sampler.sampler
        if not isinstance(sampler, PositionSampler):
            sampler = PositionSampler(sampler, seed, batch_sampler.batch_size,
                                      batch_sampler.drop_last)
            # DataLoader forbids reassigning its own sampler attributes, but
            # the BatchSampler it iterates is a plain object.
            batch_sampler.sampler = sampler
        if self.reseed_data:
            self._install_pipeline_seeding(runner, loader.dataset)

        # Batches of the current epoch the checkpoint already trained.
        sampler.skip(None, 0)
        done = runner.iter - runner.epoch * len(loader)
        if done > 0:
            if done > len(loader):
                raise RuntimeError(
                    f'cannot resume: the checkpoint is {done} iterations into '
                    f'epoch {runner.epoch + 1}, which has only {len(loader)} '
                    f'batches now. The dataset, batch size or number of '
                    f'processes changed since it was written.')
            runner.logger.info(
                f'Resuming inside epoch {runner.epoch + 1}: skipping its '
                f'first {done} batches (already trained), '
                f'{len(loader) - done} left.')
            sampler.skip(runner.epoch, done * batch_sampler.batch_size)

    def _setup_iter_loop(self, runner, loop: IterBasedTrainLoop) -> None:
        loader = loop.dataloader
        batch_sampler = loader.batch_sampler
        sampler = getattr(batch_sampler, 'sampler', None)
        if (type(batch_sampler) is not BatchSampler
                or type(sampler) is not InfiniteSampler):
            runner.logger.warning(
                'ExactResumeHook: an IterBasedTrainLoop needs mmengine\'s '
                'InfiniteSampler (batched by torch BatchSampler) for a fast, '
                'position-seeded resume; mmengine will replay the '
                'dataloader instead, loading all past data again.')
            return
        # mmengine started the loader (and its workers, which prefetched)
        # when it built the loop; restart it positioned and seeded.
        _stop_workers(loop.dataloader_iterator)
        if loader.persistent_workers:
            loader._iterator = None
        batch = batch_sampler.batch_size
        batch_sampler.sampler = StreamSampler(
            sampler, self._seed, start=runner.iter * batch, batch_size=batch)
        if self.reseed_data:
            self._install_pipeline_seeding(runner, loader.dataset)
        loop.dataloader_iterator = _FastForward(
            _InfiniteDataloaderIterator(loader), runner.iter)
        if runner.iter:
            runner.logger.info(
                f'Resuming at iteration {runner.iter}: the index stream '
                f'starts there, no past batch is loaded again.')

    def _install_pipeline_seeding(self, runner, dataset) -> None:
        base = _base_dataset(dataset)
        transforms = getattr(getattr(base, 'pipeline', None), 'transforms',
                             None)
        if base is not dataset or transforms is None:
            runner.logger.warning(
                f'ExactResumeHook: cannot seed the pipeline of '
                f'{type(dataset).__name__} by position (dataset wrappers '
                f'remap indices); data augmentation after a resume is not '
                f'reproduced exactly.')
            return
        if not any(isinstance(t, SeedFromPosition) for t in transforms):
            transforms.insert(0, SeedFromPosition())

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self.reseed_steps:
            seed_everything(
                derive_seed(self._seed, _STEP_STREAM, runner.iter,
                            self._step_rank))
        for augment in self._augments:
            augment.set_position(runner.iter, self._offset)
