"""The training side of a replay run: checks the run against the store
before the first step and tells the model which stored step each batch is."""
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.runner import EpochBasedTrainLoop

from mmfunmatch.datasets.transforms import ConsistentView
from .distiller import ReplayDistiller
from .label_loop import unwrap
from .store import ReplayStoreError
from .views import run_fingerprint


def _transforms(loader):
    dataset = getattr(loader, 'dataset', None)
    while dataset is not None and not hasattr(dataset, 'pipeline'):
        dataset = getattr(dataset, 'dataset', None)
    return getattr(getattr(dataset, 'pipeline', None), 'transforms', [])


@HOOKS.register_module()
class ReplayStoreHook(Hook):
    """Serve a :class:`ReplayDistiller` its stored targets.

    Before training: refuses a config that differs from the store's
    fingerprint (naming the keys), more epochs than stored without
    ``model.cycle``, or missing shards; and stops ``ConsistentView`` from
    rendering teacher views nobody reads. Each epoch: with cycling, epoch
    e >= E draws the views of stored epoch e mod E (sampler epoch, per-sample
    seeds and mixup step). Each step: tells the model the stored epoch and
    step. Runs after ``DistSamplerSeedHook`` and ``ExactResumeHook``.
    """

    priority = 'LOW'

    def before_train(self, runner) -> None:
        model = unwrap(runner.model)
        if not isinstance(model, ReplayDistiller):
            raise ReplayStoreError(
                f'ReplayStoreHook serves model.type="ReplayDistiller", not '
                f'{type(model).__name__}; remove the hook or set the model.')
        loop = runner.train_loop
        if not isinstance(loop, EpochBasedTrainLoop):
            raise ReplayStoreError(
                'a replay store holds epochs: train_cfg must be epoch-based '
                '(by_epoch=True, max_epochs=N).')
        rank, world = get_dist_info()
        store = model.replay
        store.check_fingerprint(
            run_fingerprint(runner.cfg, loop.dataloader, world))
        stored = store.epochs
        if loop.max_epochs > stored and not model.cycle:
            raise ReplayStoreError(
                f'train_cfg.max_epochs={loop.max_epochs} but the replay store '
                f'{store.root!r} holds {stored} epochs. Label more '
                f'(python tools/label_teacher.py CONFIG {store.root} --epochs '
                f'{loop.max_epochs}: it adds the missing ones) or reuse the '
                f'stored epochs in turn with model.cycle=True.')
        missing = [store.shard_path(e, rank)
                   for e in range(min(stored, loop.max_epochs))
                   if not store.has_shard(e, rank)]
        if missing:
            raise ReplayStoreError(
                f'{len(missing)} shards of the replay store are missing '
                f'(first: {missing[0]}); finish the labelling run (rerun '
                f'python tools/label_teacher.py with the same config and '
                f'store).')
        for loader in (loop.dataloader,
                       getattr(runner.val_loop, 'dataloader', None)):
            for t in _transforms(loader):
                if isinstance(t, ConsistentView):
                    t.drop_teacher_views()
        self._stored = stored
        self._rank, self._world = rank, world
        self._cycle_resume(runner, loop)

    def _stored_epoch(self, epoch: int) -> int:
        return epoch % self._stored

    def _cycle_resume(self, runner, loop) -> None:
        """A mid-epoch resume in a cycled epoch skips the batches of the
        stored epoch it replays."""
        sampler = getattr(loop.dataloader.batch_sampler, 'sampler', None)
        skip_epoch = getattr(sampler, '_skip_epoch', None)
        if skip_epoch is not None and skip_epoch >= self._stored:
            sampler.skip(self._stored_epoch(skip_epoch), sampler._skip)

    def before_train_epoch(self, runner) -> None:
        stored = self._stored_epoch(runner.epoch)
        if stored != runner.epoch:
            runner.train_loop.dataloader.sampler.set_epoch(stored)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        model = unwrap(runner.model)
        per_epoch = len(runner.train_loop.dataloader)
        step = runner.iter - runner.epoch * per_epoch
        stored = self._stored_epoch(runner.epoch)
        model.set_replay_position(stored, step, self._rank, self._world)
        augment = getattr(model.data_preprocessor, 'batch_augment', None)
        if stored != runner.epoch and augment is not None:
            # ExactResumeHook placed the mixup at this run's step; a cycled
            # epoch mixes as the stored one did.
            augment.set_position(stored * per_epoch + step, augment.offset)
