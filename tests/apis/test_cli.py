"""tools/train.py's command line: a bad config ends with its message and
exit code 2, no traceback and no work started; under torchrun with restarts
allowed every start resumes from the newest complete checkpoint."""
import os
import os.path as osp
import subprocess
import sys

import pytest

from mmfunmatch.apis.cli import EXIT_CONFIG
from tests.conftest import REPO


def test_config_error_exits_with_the_message_only(tmp_path):
    work_dir = tmp_path / 'work'
    missing = tmp_path / 'no_teacher.pth'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'),
         osp.join(REPO, 'configs', 'funmatch', 'demo',
                  'digits_funmatch_student.py'),
         '--work-dir', str(work_dir), '--cfg-options',
         f'model.teachers.0.checkpoint={missing}'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == EXIT_CONFIG == 2, proc.stderr[-3000:]
    assert 'config error' in proc.stderr and str(missing) in proc.stderr
    assert 'Traceback' not in proc.stderr
    # Nothing was started: no work directory content.
    assert not work_dir.exists() or not os.listdir(work_dir)


# -- elastic runs (torchrun --max-restarts, MAX_RESTARTS of dist_train.sh) ---
def _checkpoints(work_dir, *names):
    """Complete checkpoint files, written in order (oldest first)."""
    import torch
    paths = []
    for i, name in enumerate(names):
        path = osp.join(work_dir, name)
        torch.save({'meta': {'iter': i}}, path)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
        paths.append(path)
    return paths


def _elastic(monkeypatch, count, allowed):
    monkeypatch.setenv('TORCHELASTIC_RESTART_COUNT', str(count))
    monkeypatch.setenv('TORCHELASTIC_MAX_RESTARTS', str(allowed))


def test_an_elastic_start_resumes_from_the_newest_checkpoint(
        tmp_path, monkeypatch):
    from mmengine.config import Config

    from mmfunmatch.apis.cli import resume_if_elastic
    older, newest = _checkpoints(str(tmp_path), 'iter_4.pth', 'iter_8.pth')
    # Whatever the first start was given: an older --resume PATH, a
    # load_from, nothing; and on the node restarted for another node's
    # failure too (its own restart count is 0).
    for count in (0, 1):
        _elastic(monkeypatch, count, 2)
        for resume, load_from in ((True, older), (False, 'pretrained.pth'),
                                  (False, None)):
            cfg = Config(dict(work_dir=str(tmp_path), resume=resume,
                              load_from=load_from))
            resume_if_elastic(cfg)
            assert (cfg.resume, cfg.load_from) == (True, newest)


def test_an_elastic_start_without_checkpoint_or_a_plain_run_is_unchanged(
        tmp_path, monkeypatch):
    from mmengine.config import Config

    from mmfunmatch.apis.cli import resume_if_elastic
    _elastic(monkeypatch, 1, 2)  # a restart before the first checkpoint
    cfg = Config(dict(work_dir=str(tmp_path), resume=False,
                      load_from='pretrained.pth'))
    resume_if_elastic(cfg)
    assert (cfg.resume, cfg.load_from) == (False, 'pretrained.pth')
    _checkpoints(str(tmp_path), 'iter_4.pth')
    for env in ((0, 0), None):  # torchrun without restarts; no torchrun
        if env is None:
            monkeypatch.delenv('TORCHELASTIC_RESTART_COUNT')
            monkeypatch.delenv('TORCHELASTIC_MAX_RESTARTS')
        else:
            _elastic(monkeypatch, *env)
        resume_if_elastic(cfg)
        assert (cfg.resume, cfg.load_from) == (False, 'pretrained.pth')


@pytest.mark.slow
def test_a_restart_after_the_run_finished_trains_nothing(tmp_path):
    """tools/train.py in a restarted worker group (torchrun's variables) of
    a run that had finished: it resumes from the last checkpoint, trains no
    step, writes nothing and exits 0."""
    import hashlib

    from mmengine.runner import Runner

    from tests.helpers import image_folder, subprocess_env, tiny_cfg
    root = image_folder(str(tmp_path / 'data'))
    work = str(tmp_path / 'work')
    cfg = tiny_cfg(work, root, 'finished')
    Runner.from_cfg(cfg).train()
    cfg.log_level = 'INFO'
    cfg.dump(str(tmp_path / 'tiny.py'))

    def state():
        found = {}
        for name in sorted(os.listdir(work)):
            path = osp.join(work, name)
            if name.endswith('.pth') or name == 'last_checkpoint':
                with open(path, 'rb') as f:
                    found[name] = hashlib.sha256(f.read()).hexdigest()
        return found

    before = state()
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'train.py'),
         str(tmp_path / 'tiny.py'), '--work-dir', work],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(subprocess_env(), TORCHELASTIC_RESTART_COUNT='1',
                 TORCHELASTIC_MAX_RESTARTS='2'))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert ('restarts of this node so far: 1): resuming from the newest '
            'complete checkpoint, as --resume would: '
            f'{osp.join(work, "epoch_2.pth")}') in log
    assert 'resumed epoch: 2, iter: 8' in log  # mmengine's own line
    assert 'Epoch(train)' not in log
    assert state() == before
