"""Checkpoints that a killed run can always resume from.

mmengine 0.10.7's ``CheckpointHook`` deletes the oldest checkpoint *before*
writing the new one and rewrites ``last_checkpoint`` in place, so a run
killed while saving can be left with no complete checkpoint, or with
``last_checkpoint`` naming a truncated or deleted file. Here the order is:
write the new file under a temporary name and rename it (the write itself is
made atomic in :mod:`mmfunmatch.compat`), then point ``last_checkpoint`` at
it (atomically), then prune. A write that fails (disk full, read-only or
not writable directory) stops every rank with :class:`CheckpointWriteError`,
which names the directory, the cause and what to do; the previous
checkpoint stays the one ``--resume`` picks.
"""
import errno
import glob
import logging
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Sequence, Tuple

import torch
from mmengine.dist import all_reduce, get_world_size, is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.registry import HOOKS

from mmfunmatch.compat import atomic_write_bytes

LAST_CHECKPOINT = 'last_checkpoint'
# Names of checkpoints that hold a full training state (best_*.pth do not:
# they are saved without optimizer and scheduler).
_RESUMABLE = re.compile(r'^(epoch|iter)_(\d+)\.pth$')
_TMP_GLOBS = ('*.pth.tmp-*', LAST_CHECKPOINT + '.tmp-*')

# errno -> (what it means for the run, what to do).
_NO_SPACE = ('no space left (the file system or your quota is full)',
             'Free space there (old checkpoints, logs) or point the '
             'checkpoints at a larger file system')
_CAUSES = {
    errno.ENOSPC: _NO_SPACE,
    errno.EDQUOT: _NO_SPACE,
    # A file-size limit (ulimit -f, a file system's maximum file size):
    # for the run the same as a full disk.
    errno.EFBIG: ('no space: the file would exceed the largest file '
                  'allowed here (ulimit -f or the file system\'s limit)',
                  'Raise the limit or point the checkpoints at another file '
                  'system'),
    errno.EROFS: ('the file system is read-only',
                  'Remount it read-write or point the checkpoints at a '
                  'writable directory'),
    errno.EACCES: ('permission denied',
                   'Make the directory writable for this user (ls -ld) or '
                   'point the checkpoints at a writable directory'),
}
_CAUSES[errno.EPERM] = _CAUSES[errno.EACCES]


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, read-only or not
    writable directory). Raised on every rank; the message names the
    directory, the cause and what to do. No partial file is left under a
    name ``--resume`` picks, and the previous checkpoint is untouched.

    Attributes:
        errno (int): The OS error number (0 when unknown).
        directory (str): Where the checkpoint was to be written.
    """

    def __init__(self, message: str, errno_: int, directory: str) -> None:
        super().__init__(message)
        self.errno = errno_
        self.directory = directory


def _write_error_message(filename: str, directory: str, code: int,
                         detail: str, previous: Optional[str]) -> str:
    cause, advice = _CAUSES.get(
        code, ('the write failed',
               'Check the directory and the file system'))
    name = errno.errorcode.get(code, 'unknown error')
    if previous:
        kept = (f'The previous checkpoint {previous} is intact and '
                f'--resume continues from it.')
    else:
        kept = ('No checkpoint of this run was written yet; --resume '
                'starts from scratch.')
    return (f'cannot write checkpoint {filename} in {directory}: {cause} '
            f'({name}: {detail}). No partial file was left under that name. '
            f'{kept} {advice} (--work-dir, or '
            f'default_hooks.checkpoint.out_dir), then relaunch with '
            f'--resume.')


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole checkpoint written by ``torch.save``.

    torch's zip format ends with the zip central directory, so a file cut
    short anywhere (a write killed half way) has none and fails to open.
    Costs one read of the directory, not of the tensors.
    """
    if not osp.isfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            return any(n.endswith('/data.pkl') or n == 'data.pkl'
                       for n in zf.namelist())
    except (zipfile.BadZipFile, OSError, EOFError):
        return False


def find_resumable_checkpoint(work_dir: str) -> Optional[str]:
    """The newest complete full-state checkpoint of a run, or None.

    Candidates are the file ``work_dir/last_checkpoint`` names and every
    ``epoch_N.pth`` / ``iter_N.pth`` in ``work_dir``; the newest complete one
    (by modification time, which is the rename time of an atomic write) wins.
    Truncated files, stray temporary files and a stale or empty
    ``last_checkpoint`` are skipped with a message.
    """
    candidates = set()
    pointer = osp.join(work_dir, LAST_CHECKPOINT)
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
        if named:
            candidates.add(osp.abspath(named))
    for path in glob.glob(osp.join(work_dir, '*.pth')):
        if _RESUMABLE.match(osp.basename(path)):
            candidates.add(osp.abspath(path))
    best: Optional[Tuple[float, str]] = None
    for path in candidates:
        if not is_complete_checkpoint(path):
            if osp.exists(path):
                print_log(f'skipping incomplete checkpoint {path}',
                          logger='current', level=logging.WARNING)
            continue
        key = (osp.getmtime(path), path)
        best = key if best is None or key > best else best
    return None if best is None else best[1]


def _steps(out_dir: str, template: str) -> List[Tuple[int, str]]:
    """(step, path) of the files in ``out_dir`` named by ``template``."""
    pattern = re.compile('^' + re.escape(template).replace(r'\{\}', r'(\d+)')
                         + '$')
    found = []
    for name in os.listdir(out_dir) if osp.isdir(out_dir) else []:
        m = pattern.match(name)
        if m:
            found.append((int(m.group(1)), osp.join(out_dir, name)))
    return sorted(found)


def _prune(out_dir: str, template: str, keep_last: int,
           keep_every: Optional[int], protect: Sequence[str]) -> List[str]:
    """Remove the checkpoints of one family except the newest ``keep_last``
    and those whose step is a multiple of ``keep_every``."""
    if keep_last <= 0:
        return []
    ckpts = _steps(out_dir, template)
    newest = {p for _, p in ckpts[-keep_last:]}
    removed = []
    for step, path in ckpts:
        if path in newest or osp.abspath(path) in protect:
            continue
        if keep_every and step % keep_every == 0:
            continue
        os.remove(path)
        removed.append(path)
    return removed


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` with crash-safe saving, a retention policy and
    checkpoints inside long epochs.

    Takes every argument of mmengine's ``CheckpointHook`` (``interval``,
    ``by_epoch``, ``save_last``, ``save_best``, ...). The differences:

    - the new file is complete on disk (written to a temporary name and
      renamed) before ``last_checkpoint`` points at it, and old files are
      removed only after that, so a kill at any moment leaves a complete
      checkpoint to resume from;
    - retention keeps the newest ``max_keep_ckpts`` plus every
      ``keep_every``-th (e.g. every 100th epoch for later analysis);
    - with an epoch-based loop, ``iter_interval`` adds ``iter_N.pth`` every N
      iterations (a mid-epoch resume point for long epochs; made exact by
      :class:`ExactResumeHook`), with their own retention.

    Args:
        max_keep_ckpts (int): Keep this many of the newest interval
            checkpoints; -1 keeps all. Defaults to -1.
        keep_every (int, optional): Also keep those whose epoch (iteration
            for ``by_epoch=False``) is a multiple of this. Defaults to None.
        iter_interval (int, optional): Save ``iter_N.pth`` every this many
            iterations inside epochs. Defaults to None (off).
        max_keep_iter_ckpts (int): Newest iteration checkpoints to keep.
            Defaults to 2.
        keep_every_iters (int, optional): Also keep iteration checkpoints
            whose iteration is a multiple of this. Defaults to None.
        **kwargs: Other arguments of ``mmengine.hooks.CheckpointHook``.
    """

    def __init__(self,
                 *args,
                 max_keep_ckpts: int = -1,
                 keep_every: Optional[int] = None,
                 iter_interval: Optional[int] = None,
                 max_keep_iter_ckpts: int = 2,
                 keep_every_iters: Optional[int] = None,
                 **kwargs) -> None:
        # Pruning is ours (after the save, not before it).
        super().__init__(*args, max_keep_ckpts=-1, **kwargs)
        self.keep_last = max_keep_ckpts
        self.keep_every = keep_every
        self.iter_interval = iter_interval
        self.keep_last_iters = max_keep_iter_ckpts
        self.keep_every_iters = keep_every_iters
        self.iter_filename_tmpl = 'iter_{}.pth'
        # Iterations done at the newest checkpoint this hook wrote.
        self._saved_iter: Optional[int] = None

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():
            return
        for directory, pattern in zip((self.out_dir, runner.work_dir),
                                      _TMP_GLOBS):
            for tmp in glob.glob(osp.join(directory, pattern)):
                runner.logger.warning(
                    f'removing {tmp}: a write that never finished (the run '
                    f'was killed while saving)')
                os.remove(tmp)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if not (self.by_epoch and self.iter_interval
                and self.every_n_train_iters(runner, self.iter_interval)):
            return
        # The full epoch length (a resumed epoch's dataloader is shorter).
        loop = runner.train_loop
        at_epoch_end = (runner.iter + 1) % (
            loop.max_iters // loop.max_epochs) == 0
        if at_epoch_end and (self.every_n_epochs(runner, self.interval,
                                                 self.save_begin)
                             or (self.save_last
                                 and self.is_last_train_epoch(runner))):
            return  # the epoch checkpoint follows right away
        runner.logger.info(
            f'Saving checkpoint at {runner.iter + 1} iterations')
        name = self.iter_filename_tmpl.format(runner.iter + 1)
        self._save_and_point(runner, name, meta=None, by_epoch=False)
        if is_main_process():
            _prune(self.out_dir, self.iter_filename_tmpl,
                   self.keep_last_iters, self.keep_every_iters,
                   [osp.abspath(self.last_ckpt)])

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        name = self.filename_tmpl.format(step)
        self._save_and_point(runner, name, meta=meta, by_epoch=self.by_epoch)
        if is_main_process():
            _prune(self.out_dir, self.filename_tmpl, self.keep_last,
                   self.keep_every, [osp.abspath(self.last_ckpt)])

    def save_now(self, runner) -> str:
        """Checkpoint the state after the current training iteration now,
        through the same atomic path and retention as the ``iter_N.pth``
        checkpoints (for :class:`PreemptionHook`; call it from
        ``after_train_iter`` on every rank). Nothing is written when this
        iteration's checkpoint was just saved. Returns the checkpoint's
        path."""
        done = runner.iter + 1
        if self._saved_iter == done and self.last_ckpt is not None:
            return str(self.last_ckpt)
        if self.by_epoch:
            template, keep, every = (self.iter_filename_tmpl,
                                     self.keep_last_iters,
                                     self.keep_every_iters)
        else:
            template, keep, every = (self.filename_tmpl, self.keep_last,
                                     self.keep_every)
        runner.logger.info(f'Saving checkpoint at {done} iterations')
        # epoch: the completed epochs (the current one is not), as
        # mmengine's own iteration checkpoints; ExactResumeHook skips the
        # trained part of the epoch on resume.
        self._save_and_point(runner, template.format(done),
                             meta=dict(epoch=runner.epoch, iter=done),
                             by_epoch=False)
        if is_main_process():
            _prune(self.out_dir, template, keep, every,
                   [osp.abspath(self.last_ckpt)])
        return str(self.last_ckpt)

    def _save_and_point(self, runner, filename: str, meta: Optional[dict],
                        by_epoch: bool) -> None:
        previous = self.last_ckpt
        previous_info = runner.message_hub.get_info('last_ckpt', None)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        code, detail = 0, ''
        try:
            runner.save_checkpoint(
                self.out_dir,
                filename,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=by_epoch,
                backend_args=self.backend_args,
                **self.args)
            if is_main_process():
                # Only now is the new file complete on disk.
                atomic_write_bytes(
                    str(self.last_ckpt).encode(),
                    osp.join(runner.work_dir, LAST_CHECKPOINT))
        except OSError as err:
            # (an OSError without a number still counts as failed)
            code, detail = err.errno or errno.EIO, err.strerror or str(err)
        # Rank 0 writes; every rank learns whether it could (one small
        # all_reduce per checkpoint), so all stop together with the message
        # instead of waiting for rank 0 in the next collective.
        failed = code
        if get_world_size() > 1:
            flag = torch.tensor([code], dtype=torch.int64)
            all_reduce(flag, op='max')
            failed = int(flag.item())
        if not failed:
            self._saved_iter = (meta or {}).get('iter', runner.iter + 1)
            return
        self.last_ckpt = previous
        runner.message_hub.update_info('last_ckpt', previous_info)
        if not code:  # another rank (rank 0) failed
            code, detail = failed, os.strerror(failed)
        # What --resume picks (the message hub's record can name where a
        # copied or moved checkpoint was first written).
        raise CheckpointWriteError(
            _write_error_message(filename, str(self.out_dir), code, detail,
                                 find_resumable_checkpoint(runner.work_dir)),
            code, str(self.out_dir))
