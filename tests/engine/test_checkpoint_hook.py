"""SafeCheckpointHook's file handling (mmfunmatch/engine/hooks/
checkpoint_hook.py): the checkpoint --resume picks is the newest complete
one, whatever a killed writer left behind, and retention keeps the newest
plus every m-th. The kill during mmengine's own write is in
tests/test_compat.py (the atomic write is compat's)."""
import os
import os.path as osp
import re

import torch

from mmfunmatch.engine.hooks import (find_resumable_checkpoint,
                                     is_complete_checkpoint)
from mmfunmatch.engine.hooks.checkpoint_hook import _prune
from tests.helpers import truncate


def test_truncated_or_stale_checkpoints_are_never_picked(tmp_path):
    work = str(tmp_path)
    old, new = osp.join(work, 'epoch_1.pth'), osp.join(work, 'epoch_2.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(300))), old)
    # What mmengine's in-place writer leaves when killed: the newest file
    # cut short, and last_checkpoint already naming it.
    truncate(old, new, 0.9)
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(new)
    assert is_complete_checkpoint(old) and not is_complete_checkpoint(new)
    assert find_resumable_checkpoint(work) == old
    # last_checkpoint empty or naming a deleted file.
    for text in ('', osp.join(work, 'epoch_9.pth')):
        with open(osp.join(work, 'last_checkpoint'), 'w') as f:
            f.write(text)
        assert find_resumable_checkpoint(work) == old
    # best_*.pth hold no optimizer state: never a resume point.
    torch.save(dict(state_dict={}), osp.join(work, 'best_acc_epoch_3.pth'))
    assert find_resumable_checkpoint(work) == old
    os.remove(old)
    os.remove(new)
    assert find_resumable_checkpoint(work) is None


def test_retention_keeps_last_k_plus_every_mth(tmp_path):
    for step in range(1, 13):
        (tmp_path / f'iter_{step}.pth').write_bytes(b'x')
    removed = _prune(str(tmp_path), 'iter_{}.pth', keep_last=2, keep_every=5,
                     protect=[])
    left = sorted(int(re.findall(r'\d+', n)[0]) for n in os.listdir(tmp_path))
    assert left == [5, 10, 11, 12]
    assert len(removed) == 8
