"""ReplayDistiller: no teacher weights, the student's initialisation of the
online run, the student-only preprocessor, and clear errors."""
import pytest
import torch
from mmpretrain.registry import MODELS

from mmfunmatch.replay.store import ReplayStore, ReplayStoreError
from tests.conftest import tiny_classifier


def config(kind, **extra):
    return dict(
        type=kind, student=tiny_classifier(width=4),
        teachers=[dict(model=tiny_classifier(width=8), checkpoint=None,
                       mean=[127.5] * 3, std=[127.5] * 3, size=16)],
        data_preprocessor=dict(type='FunMatchDataPreprocessor',
                               batch_augments=dict(type='UniformMixup')),
        **extra)


@pytest.fixture
def store(tmp_path):
    s = ReplayStore(str(tmp_path))
    s.write_manifest(dict(epochs=1, num_classes=10, teacher_keys=['t'],
                          world_size=1, fingerprint={}))
    return str(tmp_path)


def built(cfg):
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    model.init_weights()
    return model, torch.get_rng_state()


def test_the_student_starts_as_online_without_teacher_weights(store):
    online, rng_online = built(config('FunMatchDistiller'))
    replay, rng_replay = built(config('ReplayDistiller', store=store))
    assert torch.equal(rng_online, rng_replay)
    for (k, a), b in zip(online.student.state_dict().items(),
                         replay.student.state_dict().values()):
        assert torch.equal(a, b), k
    assert sum(p.numel() for p in replay.teachers.parameters()) == 0
    assert replay.data_preprocessor.student_only
    # Skipping the teacher's construction gives another initialisation.
    _, rng_skip = built(config('ReplayDistiller', store=store,
                               match_online_init=False))
    assert not torch.equal(rng_online, rng_skip)


def test_errors_name_the_fix(store, tmp_path):
    replay, _ = built(config('ReplayDistiller', store=store))
    with pytest.raises(ReplayStoreError, match='ReplayStoreHook'):
        replay.teacher_targets([], [])
    with pytest.raises(ReplayStoreError, match='come from the replay store'):
        replay.teachers[0](torch.zeros(1, 3, 16, 16))
    with pytest.raises(ReplayStoreError, match='tools/label_teacher.py'):
        MODELS.build(config('ReplayDistiller', store=str(tmp_path / 'no')))
