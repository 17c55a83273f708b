"""What the labelling and the replay run both compute: the fingerprint
(what it covers and what it leaves to the student) and the view parameters
of a step, read from the data path and checked against the store."""
import copy

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import DATASETS
from mmpretrain.structures import DataSample

from mmfunmatch.models.batch_augments import UniformMixup
from mmfunmatch.replay.store import ReplayStoreError
from mmfunmatch.replay.views import check_views, drawn_views, run_fingerprint
from tests.helpers import FUNMATCH


class Loader:
    def __init__(self, dataset, steps):
        self.dataset, self.steps = dataset, steps

    def __len__(self):
        return self.steps


@pytest.fixture(scope='module')
def demo(digits_root, tmp_path_factory):
    cfg = Config.fromfile(FUNMATCH)
    teacher = tmp_path_factory.mktemp('t') / 'teacher.pth'
    teacher.write_bytes(b'weights')
    cfg.model.teachers[0].checkpoint = str(teacher)
    cfg.train_dataloader.dataset.data_root = digits_root
    ds_cfg = copy.deepcopy(cfg.train_dataloader.dataset)
    ds_cfg.pipeline = []
    return cfg, Loader(DATASETS.build(ds_cfg), 6), teacher


def test_fingerprint_leaves_the_student_free(demo):
    cfg, loader, _ = demo
    base = run_fingerprint(cfg, loader, 1)
    other = copy.deepcopy(cfg)
    other.model.student.backbone.base_channels = 16
    other.model.distill_loss.tau = 4.0
    other.train_dataloader.dataset.pipeline[1].student_size = 12
    other.optim_wrapper.optimizer.lr = 1.0
    assert run_fingerprint(other, loader, 1) == base


def test_fingerprint_covers_teacher_views_data_and_processes(demo):
    cfg, loader, teacher = demo
    base = run_fingerprint(cfg, loader, 1)
    assert base['train_dataloader.dataset (files)']['count'] == 200
    changed = {}
    c = copy.deepcopy(cfg)
    c.train_dataloader.dataset.pipeline[1].scale = (0.5, 1.0)
    changed['train_dataloader.dataset.pipeline'] = c
    c = copy.deepcopy(cfg)
    c.train_dataloader.batch_size = 16
    changed['train_dataloader.batch_size'] = c
    c = copy.deepcopy(cfg)
    c.randomness.seed = 1
    changed['randomness.seed'] = c
    c = copy.deepcopy(cfg)
    c.model.teachers[0].size = 20
    changed['model.teachers.0.view'] = c
    for key, c in changed.items():
        now = run_fingerprint(c, loader, 1)
        assert [k for k in base if base[k] != now[k]] == [key]
    assert run_fingerprint(cfg, loader, 2)['processes'] == 2
    teacher.write_bytes(b'other weights')
    assert (run_fingerprint(cfg, loader, 1)
            ['model.teachers.0.checkpoint_sha256'] !=
            base['model.teachers.0.checkpoint_sha256'])
    teacher.write_bytes(b'weights')


def samples(n=4):
    return [DataSample(metainfo=dict(sample_idx=10 + i, flip=bool(i % 2),
                                     crop_bbox=(i, 0, 5, 6)))
            for i in range(n)]


def test_drawn_views_are_read_from_the_data_path():
    """Step 2 of rank 1 of 2, batch 4: global positions (2 * 2 + 1) * 4 +
    k = 20..23; partners as the mixup decided them, as global positions."""
    mix = UniformMixup(seed=0)
    x = torch.zeros(4, 3)
    mix([x])
    views = drawn_views(samples(), mix, step=2, rank=1, world_size=2)
    assert views['position'].tolist() == [20, 21, 22, 23]
    assert views['sample_idx'].tolist() == [10, 11, 12, 13]
    assert views['flip'].tolist() == [0, 1, 0, 1]
    assert views['box'][3].tolist() == [3, 0, 5, 6]
    partner = mix.last_partner.tolist()
    assert views['partner'].tolist() == [20 + p for p in partner]
    assert views['weight'].tolist() == [float(mix.last_lam)] * 4
    none = drawn_views(samples(), None, step=0, rank=0, world_size=1)
    assert none['weight'].tolist() == [1.0] * 4
    assert none['partner'].tolist() == none['position'].tolist()


def test_drift_is_refused_naming_field_and_slot():
    views = drawn_views(samples(), None, step=0, rank=0, world_size=1)
    stored = {k: np.concatenate([v, v]) for k, v in views.items()}
    check_views(stored, slice(4, 8), views, 'here')
    moved = dict(views, box=views['box'].copy())
    moved['box'][2, 0] += 1
    with pytest.raises(ReplayStoreError,
                       match=r'drift at here, slot 2: .* box=\[3, 0, 5, 6\]'):
        check_views(stored, slice(0, 4), moved, 'here')
