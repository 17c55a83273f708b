"""Bitwise-exact resume, mid-epoch included.

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

- each training sample's pipeline is seeded from (seed, epoch, position of
  the sample in the epoch's global order), whichever worker, rank or process
  loads it. For mmengine's ``DefaultSampler`` the position is global, so the
  same crops are drawn whatever the number of ranks;
- python's, numpy's and torch's generators of the training process are
  seeded from (seed, iteration) before every step;
- on resume, the sampler skips the batches of the current epoch that the
  checkpoint already trained; for an ``IterBasedTrainLoop`` with mmengine's
  ``InfiniteSampler`` it starts at the checkpoint's position in the index
  stream, and mmengine's replay of past iterations loads no data.

The mixup generator (``UniformMixup`` in ``FunMatchDataPreprocessor``) is
part of the model's state dict; model, optimizer, schedulers and iteration
counters are saved by mmengine.
"""
import itertools
import random
from typing import Iterator, Optional

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

    Args:
        sampler (Sampler): The wrapped per-rank sampler.
        seed (int): The run's base seed.
    """

    def __init__(self, sampler: Sampler, seed: int) -> None:
        self.sampler = sampler
        self.seed = seed
        rank, world_size = get_dist_info()
        self.rank = getattr(sampler, 'rank', rank)
        self.world_size = getattr(sampler, 'world_size', world_size)
        # DefaultSampler gives rank r the positions r, r + W, r + 2W, ... of
        # the epoch's order: seed by that global position.
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

    def _seed(self, epoch: int, j: int) -> int:
        if self.global_positions:
            return derive_seed(self.seed, _DATA_STREAM, epoch,
                               self.rank + j * self.world_size)
        return derive_seed(self.seed, _DATA_STREAM, epoch, self.rank, j)

    def __iter__(self) -> Iterator[SeededIndex]:
        epoch, start = self.epoch, self._start()
        for j, idx in enumerate(self.sampler):
            if j >= start:
                yield SeededIndex(idx, self._seed(epoch, j))

    def __len__(self) -> int:
        return max(len(self.sampler) - self._start(), 0)


class StreamSampler(Sampler):
    """Wraps mmengine's ``InfiniteSampler``: the same rank-strided infinite
    index stream, as :class:`SeededIndex` seeded by global position, and
    starting ``start`` indices in (found by generating indices, not data).

    Args:
        sampler (InfiniteSampler): The wrapped sampler.
        seed (int): The run's base seed.
        start (int): Per-rank indices to skip. Defaults to 0.
    """

    def __init__(self, sampler: InfiniteSampler, seed: int,
                 start: int = 0) -> None:
        self.sampler = sampler
        self.seed = seed
        self.start = start
        self._stream: Optional[Iterator[SeededIndex]] = None

    def _generate(self) -> Iterator[SeededIndex]:
        rank, world = self.sampler.rank, self.sampler.world_size
        indices = self.sampler._indices_of_rank()  # a fresh stream
        for j, idx in enumerate(
                itertools.islice(indices, self.start, None), self.start):
            yield SeededIndex(
                idx, derive_seed(self.seed, _STREAM_DATA_STREAM,
                                 rank + j * world))

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


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make a resumed run bitwise identical to an uninterrupted one, also
    when the checkpoint was written in the middle of an epoch.

    Supports an ``EpochBasedTrainLoop`` with any sampler that has
    ``set_epoch`` (mmengine's ``DefaultSampler``), and an
    ``IterBasedTrainLoop`` with mmengine's ``InfiniteSampler``, each batched
    by torch's ``BatchSampler`` (mmengine's default); otherwise it warns and
    only reseeds the steps. Bitwise equality also needs deterministic
    kernels (``randomness.deterministic`` on GPU), the same number of
    threads and the same number of processes.

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

    def before_train(self, runner) -> None:
        seed = runner.seed if runner.seed is not None else 0
        self._seed = seed
        diff_rank = runner._randomness_cfg.get('diff_rank_seed', False)
        self._step_rank = get_dist_info()[0] if diff_rank else 0
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            self._setup_iter_loop(runner, loop)
            return
        if not isinstance(loop, EpochBasedTrainLoop):
            runner.logger.warning(
                f'ExactResumeHook: {type(loop).__name__} is not supported; '
                f'only steps are reseeded.')
            return
        loader = loop.dataloader
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
            sampler = PositionSampler(sampler, seed)
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
        batch_sampler.sampler = StreamSampler(
            sampler, self._seed, start=runner.iter * batch_sampler.batch_size)
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
