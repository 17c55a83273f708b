import copy

import numpy as np
import pytest
import torch
from mmengine.dataset import default_collate, pseudo_collate
from mmpretrain.registry import MODELS

from mmfunmatch.datasets.transforms import ConsistentView, PackFunMatchInputs

# Student and teachers normalised with different statistics, as BiT (0.5)
# teachers and an ImageNet-statistics student are.
PREPROCESSOR = dict(
    type='FunMatchDataPreprocessor',
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    teachers=[dict(mean=[127.5] * 3, std=[127.5] * 3, size=16),
              dict(mean=[127.5] * 3, std=[127.5] * 3, size=24),
              dict(mean=[100.] * 3, std=[50.] * 3, size=16)],
    batch_augments=dict(type='UniformMixup', seed=0))


def rendered(n=4, mode='same/ic'):
    """ConsistentView results for n photographs-like images: teachers 0 and
    2 are the student's size (shared), teacher 1 has its own size."""
    rng = np.random.default_rng(0)
    view = ConsistentView(student_size=16, teacher_sizes=[16, 24, 16],
                          mode=mode)
    np.random.seed(0)
    return [
        view(dict(img=rng.integers(0, 256, (40, 50, 3), dtype=np.uint8),
                  gt_label=i)) for i in range(n)
    ]


def packed(results, share: bool):
    results = copy.deepcopy(results)  # deepcopy keeps the shared arrays
    if not share:  # every view its own array: packed as before sharing
        for r in results:
            r['teacher_imgs'] = [v.copy() for v in r['teacher_imgs']]
    return [PackFunMatchInputs()(r) for r in results]


@pytest.mark.parametrize('collate', [default_collate, pseudo_collate])
@pytest.mark.parametrize('training', [False, True])
def test_shared_views_give_every_model_what_separate_views_give(
        collate, training):
    results = rendered()
    outs = []
    for share in (True, False):
        pre = MODELS.build(PREPROCESSOR)  # same mixup seed: the same draw
        outs.append(pre(collate(packed(results, share)), training)['inputs'])
    shared, separate = outs
    assert torch.equal(shared['student'], separate['student'])
    assert len(shared['teachers']) == len(separate['teachers']) == 3
    for a, b in zip(shared['teachers'], separate['teachers']):
        assert a.shape == b.shape
        assert torch.equal(a, b)


def test_a_shared_view_is_carried_once_and_normalised_per_model():
    pre = MODELS.build(dict(PREPROCESSOR, batch_augments=None))
    batch = default_collate(packed(rendered(), share=True))
    teachers = batch['inputs']['teachers']
    # The batch holds the student's pixels once; teachers 0 and 2 name them.
    assert teachers[0].tolist() == [0] * 4 and teachers[2].tolist() == [0] * 4
    assert teachers[1].shape == (4, 3, 24, 24)
    pixels = sum(v.numel() for v in [batch['inputs']['student'], *teachers]
                 if v.dtype == torch.uint8)
    assert pixels == 4 * 3 * (16 * 16 + 24 * 24)

    # On the device every model has its view; shared ones are one tensor
    # (moved once), so consumers of the raw batch see one view per model.
    raw = pre.cast_data(batch)['inputs']
    assert raw['teachers'][0] is raw['student']
    assert raw['teachers'][2] is raw['student']
    assert raw['teachers'][1].shape == (4, 3, 24, 24)

    out = pre(batch, False)['inputs']
    rgb = raw['student'].flip(1).float()
    for i, view in ((0, out['teachers'][0]), (2, out['teachers'][2])):
        mean, std = pre._teacher_stats(i)
        assert torch.equal(view, (rgb - mean) / std)
    assert torch.equal(out['student'], (rgb - pre.mean) / pre.std)
    assert not torch.equal(out['teachers'][2], out['teachers'][0])


def test_mixup_is_one_draw_for_shared_and_own_views():
    pre = MODELS.build(PREPROCESSOR)
    plain = MODELS.build(dict(PREPROCESSOR, batch_augments=None))
    batch = default_collate(packed(rendered(), share=True))
    mixed = pre(batch, True)['inputs']
    clean = plain(batch, False)['inputs']
    lam = float(pre.batch_augment.last_lam)
    for m, c in zip([mixed['student'], *mixed['teachers']],
                    [clean['student'], *clean['teachers']]):
        assert torch.allclose(m, lam * c + (1 - lam) * c.roll(1, 0),
                              atol=1e-5)


def test_bad_view_references():
    pre = MODELS.build(PREPROCESSOR)
    batch = default_collate(packed(rendered(), share=True))
    disagree = copy.deepcopy(batch)
    disagree['inputs']['teachers'][0] = torch.tensor([0, 0, 1, 0])
    with pytest.raises(ValueError, match='disagree on which view teacher 0'):
        pre(disagree, False)
    ahead = copy.deepcopy(batch)
    ahead['inputs']['teachers'][0] = torch.tensor([2] * 4)
    with pytest.raises(ValueError, match='teacher 0 reads view 2'):
        pre(ahead, False)


def test_student_only_ignores_teacher_views_and_mixes_the_student_alike():
    """A replay run's preprocessor (``student_only``) hands on no teacher
    view and gives the student's view the very values, mixup included, of
    the full preprocessor."""
    batch = default_collate(packed(rendered(), share=True))
    full = MODELS.build(PREPROCESSOR)(copy.deepcopy(batch), True)['inputs']
    alone = MODELS.build(dict(PREPROCESSOR, student_only=True))(
        copy.deepcopy(batch), True)['inputs']
    assert alone['teachers'] == []
    assert torch.equal(full['student'], alone['student'])
