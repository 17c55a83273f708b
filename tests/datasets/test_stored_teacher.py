"""tools/precompute_teacher.py and StoredTeacherDataset: the fix/ic_ens
baseline's stored targets equal a direct computation, survive interruption,
reach the loss in place of the teacher, and are refused outside that
baseline."""
import copy
import os
import os.path as osp

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.registry import init_default_scope
from mmpretrain.registry import DATASETS, MODELS

import mmfunmatch  # noqa: F401
from mmfunmatch.apis.validate import ConfigError, validate_config
from mmfunmatch.datasets import StoredTeacherDataset
from mmfunmatch.datasets.stored_teacher import (load_stored_teacher,
                                                sample_key,
                                                save_stored_teacher)
from mmfunmatch.models.losses import KLDivergenceT
from projects.funmatch_paper import precompute_teacher as tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs/funmatch/ablation/digits_fix_ic_ens.py')

init_default_scope('mmpretrain')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """Three 32 px training images (two classes), a val folder, and a
    trained-looking (fixed random) demo teacher saved to disk."""
    tmp = tmp_path_factory.mktemp('stored')
    root = tmp / 'digits'
    rng = np.random.RandomState(0)
    for split, n in (('train_small', 3), ('val', 2)):
        for i in range(n):
            path = root / split / str(i % 2) / f'{i:04d}.png'
            os.makedirs(path.parent, exist_ok=True)
            img = cv2.resize(rng.randint(0, 256, (4, 4, 3)).astype(np.uint8),
                             (32, 32), interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(path), img)
    cfg = Config.fromfile(CONFIG)
    torch.manual_seed(0)
    teacher = MODELS.build(cfg.model.teachers[0].model)
    teacher.init_weights()
    ckpt = str(tmp / 'teacher.pth')
    torch.save(teacher.state_dict(), ckpt)
    return dict(tmp=tmp, root=str(root), ckpt=ckpt)


def make_config(setup, name: str, **precompute) -> str:
    """The fix/ic_ens demo config pointed at the test data and teacher."""
    cfg = Config.fromfile(CONFIG)
    cfg.model.teachers[0].checkpoint = setup['ckpt']
    cfg.train_dataloader.dataset.dataset.data_root = setup['root']
    cfg.val_dataloader.dataset.data_root = setup['root']
    cfg.test_dataloader.dataset.data_root = setup['root']
    cfg.train_dataloader.dataset.teacher_file = str(setup['tmp'] /
                                                    f'{name}.npz')
    cfg.precompute_teacher.update(precompute)
    path = str(setup['tmp'] / f'{name}.py')
    cfg.dump(path)
    return path


def direct_log_probs(setup, flip: bool) -> dict:
    """The teacher's log-probabilities on each whole image, computed here
    from the file on disk: resize to 16 px, RGB, (x - 127.5) / 127.5."""
    cfg = Config.fromfile(CONFIG)
    teacher = MODELS.build(cfg.model.teachers[0].model)
    teacher.load_state_dict(torch.load(setup['ckpt'], weights_only=True))
    teacher.eval()
    out = {}
    for dirpath, _, files in os.walk(osp.join(setup['root'], 'train_small')):
        for f in files:
            path = osp.join(dirpath, f)
            img = cv2.resize(cv2.imread(path), (16, 16),
                             interpolation=cv2.INTER_LINEAR)
            if flip:
                img = img[:, ::-1]
            x = torch.from_numpy(img[..., ::-1].copy()).permute(2, 0, 1)
            x = (x.float()[None] - 127.5) / 127.5
            with torch.no_grad():
                logits = teacher(x, mode='tensor')
            out[sample_key(path, setup['root'])] = logits.log_softmax(1)[0]
    return out


@pytest.mark.parametrize('flip_prob', [0.0, 1.0])
def test_stored_values_equal_a_direct_computation(setup, flip_prob, capsys):
    # Whole-image "inception crops" (area 100 %, aspect 1 on square images):
    # every crop is the image (flipped when flip_prob is 1), so the mean over
    # crops is the single prediction on the image.
    cfg_path = make_config(setup, f'direct{flip_prob}', num_crops=3,
                           scale=(1.0, 1.0), ratio=(1.0, 1.0),
                           flip_prob=flip_prob)
    out = str(setup['tmp'] / f'direct{flip_prob}.npz')
    assert tool.main([cfg_path, out, '--device', 'cpu']) == 0
    keys, logits, settings = load_stored_teacher(out)
    expected = direct_log_probs(setup, flip=flip_prob == 1.0)
    assert sorted(keys.tolist()) == sorted(expected)
    # Same pixels, another batching: float32 rounding only. The random
    # teacher's logits are ~1e-2, so log-probabilities (~2.3) move by an ulp
    # or two (2.4e-7 each; 2.4e-7 measured): 1e-5 is 40 ulp.
    for key, row in zip(keys.tolist(), logits):
        np.testing.assert_allclose(row, expected[key].numpy(), atol=1e-5)
    assert int(settings['num_crops']) == 3
    # Pickle-free: the arrays load with allow_pickle=False (done above) and
    # hold no objects.
    assert keys.dtype.kind == 'U' and logits.dtype == np.float32


def test_precompute_resumes_to_the_same_result(setup, capsys):
    cfg_path = make_config(setup, 'resume', num_crops=5)
    full = str(setup['tmp'] / 'full.npz')
    parts = str(setup['tmp'] / 'parts.npz')
    assert tool.main([cfg_path, full, '--batch-size', '2']) == 0

    # Interrupted twice (one image per run), then finished.
    tool.main([cfg_path, parts, '--max-images', '1', '--save-every', '1'])
    assert not osp.exists(parts)
    assert len(os.listdir(parts + '.partial')) == 1
    capsys.readouterr()
    tool.main([cfg_path, parts, '--max-images', '1', '--batch-size', '3'])
    assert 'resuming: 1 of 3 images done' in capsys.readouterr().out
    tool.main([cfg_path, parts])
    assert 'resuming: 2 of 3 images done' in capsys.readouterr().out
    assert osp.isfile(parts) and not osp.exists(parts + '.partial')

    keys_a, logits_a, _ = load_stored_teacher(full)
    keys_b, logits_b, _ = load_stored_teacher(parts)
    assert keys_a.tolist() == keys_b.tolist()
    # The same crops (seeded by image key): batches of 2, 1 and 3 images
    # differ at most by kernel blocking, which moves the ~1e-2 logits by
    # ~1e-9 and so each mean log-probability by an ulp or two (2.4e-7): 1e-6
    # allows 4 (0 measured).
    np.testing.assert_allclose(logits_a, logits_b, rtol=0, atol=1e-6)
    # Crops differ from the whole image: the mean is not one prediction.
    # (2.8e-3 apart: the seeded crops, not rounding, ~1e-7, decide this.)
    whole = direct_log_probs(setup, flip=False)
    assert not np.allclose(logits_a[0], whole[keys_a[0]].numpy(), atol=1e-3)
    # A finished file is not recomputed; other settings are refused.
    tool.main([cfg_path, parts])
    assert 'already holds all 3 images' in capsys.readouterr().out
    with pytest.raises(SystemExit, match='other images or settings'):
        tool.main([cfg_path, parts, '--num-crops', '6'])


def test_precompute_refuses_a_random_teacher(setup):
    cfg_path = make_config(setup, 'random')
    cfg = Config.fromfile(cfg_path)
    cfg.model.teachers[0].checkpoint = None
    cfg.dump(cfg_path)
    with pytest.raises(SystemExit, match='random teacher'):
        tool.main([cfg_path, str(setup['tmp'] / 'random.npz')])


@pytest.fixture(scope='module')
def stored(setup):
    """A finished file and the config that reads it."""
    cfg_path = make_config(setup, 'served', num_crops=4)
    cfg = Config.fromfile(cfg_path)
    assert tool.main([cfg_path, cfg.train_dataloader.dataset.teacher_file,
                      '--device', 'cpu']) == 0
    return cfg


def test_dataset_serves_the_stored_logits(stored):
    dataset = DATASETS.build(stored.train_dataloader.dataset)
    assert isinstance(dataset, StoredTeacherDataset) and len(dataset) == 3
    keys, logits, _ = load_stored_teacher(dataset.teacher_file)
    rows = dict(zip(keys.tolist(), logits))
    inner = dataset.dataset
    for i in range(len(dataset)):
        sample = dataset[i]
        key = sample_key(inner.get_data_info(i)['img_path'], inner.data_root)
        served = sample['data_samples'].teacher_logits
        assert torch.equal(served, torch.from_numpy(rows[key]))
        assert sample['inputs'].shape == (3, 16, 16)  # the student's crop


def test_distiller_uses_stored_targets_instead_of_the_teacher(stored):
    model = MODELS.build(stored.model)
    calls = []
    model.teachers[0].register_forward_hook(lambda *a: calls.append(1))
    dataset = DATASETS.build(stored.train_dataloader.dataset)
    batch = default_collate([dataset[0], dataset[1]])
    data = model.data_preprocessor(batch, True)
    losses = model.loss(**data)
    assert calls == []  # the teacher never ran
    target = torch.stack([s.teacher_logits for s in data['data_samples']])
    student = model.student_logits(data['inputs']['student'])
    expected = KLDivergenceT(tau=1.0)(student, target)
    # The same loss function on logits recomputed by the same model from the
    # same inputs: equal on any CPU.
    assert losses['loss_distill'].item() == pytest.approx(expected.item(),
                                                          rel=1e-5)
    # Without stored targets it refuses (never a silent teacher forward).
    for s in data['data_samples']:
        del s.teacher_logits
    with pytest.raises(ValueError, match='carry no stored "teacher_logits"'):
        model.loss(**data)
    assert calls == []


def test_the_fix_ic_ens_config_passes_validation(stored):
    validate_config(stored)


def test_stored_targets_need_the_stored_target_distiller(stored):
    cfg = copy.deepcopy(stored)
    cfg.model.type = 'FunMatchDistiller'  # would run the teacher instead
    with pytest.raises(ConfigError,
                       match="model.type is 'FunMatchDistiller'.*"
                       "model.type='StoredTargetDistiller'"):
        validate_config(cfg)


def test_random_student_views_without_the_baseline_are_refused(stored):
    cfg = copy.deepcopy(stored)
    del cfg.train_dataloader.dataset['baseline']
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    assert "ConsistentView(mode='fix/cc')" in message
    assert "baseline='fix/ic_ens'" in message
    assert 'remove StoredTeacherDataset' in message
    # The same for any random transform of the student.
    cfg.train_dataloader.dataset.dataset.pipeline.insert(
        1, dict(type='RandomFlip', prob=0.5))
    with pytest.raises(ConfigError, match='RandomFlip'):
        validate_config(cfg)
    # And the dataset itself refuses to serve without the declaration.
    with pytest.raises(ValueError, match="baseline='fix/ic_ens'"):
        DATASETS.build(cfg.train_dataloader.dataset)


def test_stored_targets_with_mixup_are_refused(stored):
    cfg = copy.deepcopy(stored)
    cfg.model.data_preprocessor.batch_augments = dict(type='UniformMixup')
    with pytest.raises(ConfigError, match='batch_augments'):
        validate_config(cfg)


def test_incomplete_or_missing_files_name_the_tool(stored, setup):
    ds_cfg = copy.deepcopy(stored.train_dataloader.dataset)
    keys, logits, _ = load_stored_teacher(ds_cfg.teacher_file)
    part = str(setup['tmp'] / 'part.npz')
    save_stored_teacher(part, keys[:2], logits[:2])
    ds_cfg.teacher_file = part
    with pytest.raises(KeyError, match='precompute_teacher.py'):
        DATASETS.build(ds_cfg)
    ds_cfg.teacher_file = str(setup['tmp'] / 'absent.npz')
    with pytest.raises(FileNotFoundError, match='precompute_teacher.py'):
        DATASETS.build(ds_cfg)
    ds_cfg = copy.deepcopy(stored.train_dataloader.dataset)
    ds_cfg.dataset.pipeline[-1] = dict(type='PackFunMatchInputs')
    with pytest.raises(ValueError, match="algorithm_keys=\\['teacher_logits'"):
        DATASETS.build(ds_cfg)
