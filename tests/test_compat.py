"""The pinned stack's workarounds (mmfunmatch.compat) hold."""
import os
import os.path as osp
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from mmfunmatch.compat import load_runner_checkpoint
from mmfunmatch.engine.hooks import (find_resumable_checkpoint,
                                     is_complete_checkpoint)
from tests.conftest import REPO, tiny_classifier
from tests.helpers import subprocess_env


def test_mmrazor_imports_after_mmfunmatch_in_a_fresh_process():
    code = ('import mmfunmatch, mmrazor.models\n'
            'from mmrazor.registry import MODELS\n'
            'assert MODELS.get("SingleTeacherDistill")\n'
            'assert MODELS.get("KLDivergenceT").__module__.startswith('
            '"mmfunmatch")\n'
            'print("ok")')
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith('ok')


def test_mmrazor_quantization_says_it_is_unavailable():
    from mmrazor.structures.quantization import QConfigHandler
    with pytest.raises(RuntimeError, match='quantization is unavailable'):
        QConfigHandler()


def test_mmrazor_single_teacher_distill_trains_with_kl_divergence_t():
    import mmrazor.models  # noqa: F401
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample
    from mmengine.registry import DefaultScope
    from mmrazor.registry import MODELS

    def scoped(cfg):
        # As in MMRazor configs: every type named with its scope.
        cfg = dict(cfg, type='mmpretrain.ImageClassifier')
        for part in ('backbone', 'neck', 'head'):
            cfg[part] = dict(cfg[part], type='mmpretrain.' + cfg[part]['type'])
        cfg['head']['loss'] = dict(type='mmpretrain.CrossEntropyLoss')
        cfg['data_preprocessor'] = dict(
            type='mmpretrain.ClsDataPreprocessor', mean=[127.5] * 3,
            std=[127.5] * 3)
        return cfg

    # Other tests may leave another default scope behind; an MMRazor config
    # runs with default_scope='mmrazor'.
    with DefaultScope.overwrite_default_scope('mmrazor'):
        model = _build_razor(MODELS, scoped)
    wrapper = build_optim_wrapper(model.architecture, dict(
        optimizer=dict(type='SGD', lr=0.1)))
    torch.manual_seed(0)
    data = dict(inputs=torch.randint(0, 256, (4, 3, 16, 16)).float(),
                data_samples=[DataSample().set_gt_label(i) for i in range(4)])
    before = [p.clone() for p in model.architecture.parameters()]
    for _ in range(3):
        losses = model.train_step(data, wrapper)
    assert 'distill.loss_kl' in losses and torch.isfinite(
        losses['distill.loss_kl'])
    assert any(not torch.equal(a, b)
               for a, b in zip(before, model.architecture.parameters()))


def test_runner_checkpoints_load_without_full_unpickling(tmp_path):
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader
    import numpy as np
    path = str(tmp_path / 'ckpt.pth')
    buf = HistoryBuffer()
    buf.update(1.5)
    torch.save(dict(state_dict=dict(w=torch.ones(2)),
                    message_hub=dict(log_scalars=dict(loss=buf)),
                    meta=dict(seed=np.int64(3), arr=np.zeros(2))), path)
    ckpt = CheckpointLoader.load_checkpoint(path, map_location='cpu')
    assert ckpt['message_hub']['log_scalars']['loss'].current() == 1.5

    class Payload:
        def __reduce__(self):
            return (os.system, (f'touch {tmp_path}/pwned', ))

    bad = str(tmp_path / 'bad.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(2)), x=Payload()), bad)
    with pytest.raises(RuntimeError, match='refusing to load'):
        CheckpointLoader.load_checkpoint(bad, map_location='cpu')
    assert not os.path.exists(tmp_path / 'pwned')


# -- atomic checkpoint writes (docs/reliability.md) ---------------------------
_WRITER = textwrap.dedent('''
    import importlib.util, sys, torch
    # compat.py alone (not the whole package, for a fast start): its patch
    # makes mmengine's file writes atomic.
    spec = importlib.util.spec_from_file_location('compat', sys.argv[3])
    compat = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(compat)
    compat._atomic_local_put()
    from mmengine.runner.checkpoint import save_checkpoint
    big = torch.zeros(int(sys.argv[2]) // 4)  # written for a while
    save_checkpoint(dict(state_dict=dict(w=big), meta=dict(iter=2)),
                    sys.argv[1])
''')


def test_kill_during_checkpoint_write_leaves_only_complete_files(tmp_path):
    """SIGKILL mmengine's own save_checkpoint in the middle of its write."""
    work = str(tmp_path)
    good = osp.join(work, 'iter_1.pth')
    torch.save(dict(state_dict=dict(w=torch.ones(3)), meta=dict(iter=1)),
               good)
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(good)
    target = osp.join(work, 'iter_2.pth')
    proc = subprocess.Popen(
        [sys.executable, '-c', _WRITER, target, str(200 * 2**20),
         osp.join(REPO, 'mmfunmatch', 'compat.py')],
        env=subprocess_env(), cwd=REPO)
    deadline = time.time() + 120
    tmp = None
    while tmp is None and time.time() < deadline and proc.poll() is None:
        tmp = next((n for n in os.listdir(work) if '.tmp-' in n), None)
    assert tmp is not None, 'the writer never showed its temporary file'
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not osp.exists(target), 'a partial file under the final name'
    assert osp.exists(osp.join(work, tmp))
    assert not is_complete_checkpoint(osp.join(work, tmp))
    assert find_resumable_checkpoint(work) == good
    assert load_runner_checkpoint(good)['meta']['iter'] == 1


def _build_razor(MODELS, scoped):
    return MODELS.build(dict(
        type='SingleTeacherDistill',
        architecture=scoped(tiny_classifier(4)),
        teacher=scoped(tiny_classifier(8)),
        distiller=dict(
            type='ConfigurableDistiller',
            student_recorders=dict(
                fc=dict(type='ModuleOutputs', source='head.fc')),
            teacher_recorders=dict(
                fc=dict(type='ModuleOutputs', source='head.fc')),
            distill_losses=dict(
                loss_kl=dict(type='KLDivergenceT', tau=2.0, loss_weight=1.0)),
            loss_forward_mappings=dict(
                loss_kl=dict(
                    preds_S=dict(from_student=True, recorder='fc'),
                    preds_T=dict(from_student=False, recorder='fc'))))))


def test_close_process_group_destroys_the_group_once():
    """A finished run leaves no process group to interpreter shutdown (a
    gloo group left there can abort the process: exit code -6)."""
    import torch.distributed as dist

    from mmfunmatch.compat import close_process_group
    from tests.helpers import free_port
    store = dist.TCPStore('127.0.0.1', free_port(), 1, True)
    dist.init_process_group('gloo', store=store, rank=0, world_size=1)
    assert dist.is_initialized()
    close_process_group()
    assert not dist.is_initialized()
    close_process_group()  # nothing left to destroy: a no-op


def test_end_distributed_process_runs_atexit_and_exits_with_the_code(
        tmp_path):
    """After a multi-process run: the group is destroyed, atexit handlers run
    (logs, dataloader workers), and the process ends with the given code
    before interpreter finalization; without a group it does nothing."""
    marker = tmp_path / 'atexit_ran'
    script = textwrap.dedent(f'''
        import atexit, sys
        import torch.distributed as dist
        from mmfunmatch.compat import end_distributed_process
        from tests.helpers import free_port
        end_distributed_process(9)  # no group yet: returns
        atexit.register(lambda: open({str(marker)!r}, 'w').write('ok'))
        store = dist.TCPStore('127.0.0.1', free_port(), 1, True)
        dist.init_process_group('gloo', store=store, rank=0, world_size=1)
        end_distributed_process(7)
        print('not reached')
    ''')
    proc = subprocess.run([sys.executable, '-c', script], cwd=REPO,
                          env=subprocess_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 7, proc.stderr[-2000:]
    assert marker.read_text() == 'ok'
    assert 'not reached' not in proc.stdout


def test_mmrazor_mmcls_era_configs_load_and_name_mmpretrain_classes():
    """MMRazor's classification configs inherit `mmcls::` files and name
    `mmcls.X` types (mmcls 1.x, renamed mmpretrain): the config loads with
    mmpretrain's bases and the names resolve to mmpretrain's classes."""
    from mmengine.config import Config
    from mmpretrain.models import ImageClassifier, ResNet_CIFAR
    from mmrazor.registry import MODELS as RAZOR_MODELS
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/funmatch/byot/mmrazor_byot_resnet18_digits.py'))
    # From mmpretrain's _base_/schedules/cifar10_bs128.py and
    # _base_/default_runtime.py, overridden where the BYOT file says so.
    assert cfg.default_scope == 'mmpretrain'
    assert cfg.auto_scale_lr == dict(base_batch_size=128)
    assert cfg.train_cfg.max_epochs == 250
    assert RAZOR_MODELS.get('mmcls.ImageClassifier') is ImageClassifier
    assert RAZOR_MODELS.get('mmcls.ResNet_CIFAR') is ResNet_CIFAR
