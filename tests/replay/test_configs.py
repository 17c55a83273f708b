"""The replay configs: each student config of a recipe asks for the store
its label config writes (the same fingerprint, so one store serves them
all), and the demo's replay config is the demo student plus the store."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmfunmatch.models.teacher_spec import teacher_specs
from mmfunmatch.replay.views import run_fingerprint
from tests.conftest import REPO

REPLAY = osp.join(REPO, 'configs', 'funmatch', 'replay')


class _NoImages:
    dataset = type('Empty', (), {'__len__': lambda self: 0})()

    def __len__(self):
        return 0


def fingerprint(name, teacher):
    cfg = Config.fromfile(osp.join(REPLAY, name))
    for spec in teacher_specs(cfg.model.teachers):
        # One stand-in file for every config (the digest must agree).
        cfg.merge_from_dict({f'{spec.key}.checkpoint': str(teacher)})
    return cfg, run_fingerprint(cfg, _NoImages(), 8)


@pytest.mark.parametrize('label, students', [
    ('r50_bit152x2_imagenet_label.py', [
        'r50_bit152x2_imagenet_replay.py',
        'r50_160_bit152x2_224_imagenet_replay.py',
        'mobilenet_v3_large_gn_bit152x2_imagenet_replay.py']),
    ('r50_bit152x2_pets_128px_300_ep_label.py',
     ['r50_bit152x2_pets_128px_300_ep_replay.py']),
])
def test_one_store_serves_every_student_of_a_recipe(tmp_path, label,
                                                    students):
    teacher = tmp_path / 'teacher.bin'
    teacher.write_bytes(b'weights')
    label_cfg, want = fingerprint(label, teacher)
    assert label_cfg.model.type == 'FunMatchDistiller'
    assert label_cfg.train_cfg.by_epoch
    for name in students:
        cfg, got = fingerprint(name, teacher)
        assert cfg.model.type == 'ReplayDistiller'
        assert [h.type for h in cfg.custom_hooks] == ['ReplayStoreHook']
        assert got == want, name


def test_the_recipe_sizes_in_the_label_config_comments():
    """The sizes quoted in the label config: 1,281,167 x 1200 views."""
    from mmfunmatch.replay.store import bytes_per_view
    views = 1_281_167 * 1200
    assert round(views * bytes_per_view('fp32', 1000) / 1e12, 1) == 6.2
    assert round(views * bytes_per_view('fp16', 1000) / 1e12, 1) == 3.1
    assert round(views * bytes_per_view('topk', 1000, 10) / 1e9) == 134
    assert round(3680 * 300 * bytes_per_view('fp32', 37) / 1e6) == 213
