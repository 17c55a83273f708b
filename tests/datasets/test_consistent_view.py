import os

import cv2
import numpy as np
import pytest

from mmfunmatch.datasets.transforms import ConsistentView, PackFunMatchInputs


def real_image(digits_root, size=None):
    path = os.path.join(digits_root, 'train', '3')
    name = sorted(os.listdir(path))[0]
    img = cv2.imread(os.path.join(path, name))
    if size is not None:  # a larger, non-square image for crop geometry
        img = cv2.resize(img, size, interpolation=cv2.INTER_CUBIC)
    return img


def run(transform, img, seed):
    np.random.seed(seed)
    return transform(dict(img=img.copy()))


def test_teacher_view_is_the_student_crop_at_another_size(digits_root):
    img = real_image(digits_root, (120, 96))
    t = ConsistentView(student_size=24, teacher_sizes=[48, 40], mode='same/ic')
    for seed in range(10):
        out = run(t, img, seed)
        s = out['img'].astype(np.float32)
        assert s.shape == (24, 24, 3)
        assert [v.shape[:2] for v in out['teacher_imgs']] == [(48, 48),
                                                              (40, 40)]
        assert out['teacher_crop_bboxes'] == [out['crop_bbox']] * 2
        for view in out['teacher_imgs']:
            down = cv2.resize(view, (24, 24), interpolation=cv2.INTER_AREA)
            # Same content up to interpolation error (0-255 scale).
            assert np.abs(down.astype(np.float32) - s).mean() < 12


def test_independent_crops_differ(digits_root):
    img = real_image(digits_root, (120, 96))
    t = ConsistentView(student_size=24, teacher_sizes=[24], mode='ind/ic')
    differing = 0
    for seed in range(10):
        out = run(t, img, seed)
        if out['crop_bbox'] != out['teacher_crop_bboxes'][0]:
            differing += 1
            assert np.abs(out['img'].astype(np.float32) -
                          out['teacher_imgs'][0]).mean() > 1
    assert differing >= 9


def test_same_crop_size_gives_identical_views(digits_root):
    img = real_image(digits_root, (64, 64))
    t = ConsistentView(student_size=32, teacher_sizes=[32], mode='same/rc')
    out = run(t, img, 0)
    np.testing.assert_array_equal(out['img'], out['teacher_imgs'][0])


def test_flip_is_shared(digits_root):
    img = real_image(digits_root, (64, 64))
    t = ConsistentView(student_size=32, teacher_sizes=[32], mode='same/ic',
                       flip_prob=1.0, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    out = run(t, img, 0)
    assert out['flip']
    ref = cv2.resize(img, (32, 32), interpolation=cv2.INTER_LINEAR)[:, ::-1]
    np.testing.assert_array_equal(out['img'], ref)
    np.testing.assert_array_equal(out['teacher_imgs'][0], ref)


def test_fixed_modes(digits_root):
    img = real_image(digits_root, (80, 60))  # w=80, h=60
    rs = ConsistentView(student_size=20, teacher_sizes=[30], mode='fix/rs')
    a, b = run(rs, img, 0), run(rs, img, 1)
    assert a['crop_bbox'] == (0, 0, 80, 60) and not a['flip']
    np.testing.assert_array_equal(a['teacher_imgs'][0], b['teacher_imgs'][0])

    cc = ConsistentView(student_size=20, teacher_sizes=[20], mode='fix/cc',
                        crop_frac=0.5)
    outs = [run(cc, img, s) for s in range(6)]
    # Teacher: always the same central square of half the short side.
    assert {o['teacher_crop_bboxes'][0] for o in outs} == {(25, 15, 30, 30)}
    # Student: random squares of that size, not all central.
    assert len({o['crop_bbox'] for o in outs}) > 1
    assert all(o['crop_bbox'][2:] == (30, 30) for o in outs)


def test_inception_box_respects_ranges():
    t = ConsistentView(student_size=8, scale=(0.05, 1.0))
    np.random.seed(0)
    for _ in range(200):
        (x, y, w, h), _ = t.draw_box('ic', 100, 200)
        assert 0 <= x and x + w <= 200 and 0 <= y and y + h <= 100
        assert 0.04 <= w * h / 20000 <= 1.0
        assert 3 / 4 - 0.05 <= w / h <= 4 / 3 + 0.05


def test_grey_image_keeps_a_channel_axis():
    t = ConsistentView(student_size=8, teacher_sizes=[16])
    out = t(dict(img=np.zeros((20, 20), np.uint8)))
    assert out['img'].shape == (8, 8, 1)
    assert out['teacher_imgs'][0].shape == (16, 16, 1)


def test_packing_gives_every_view_to_the_model(digits_root):
    img = real_image(digits_root)
    t = ConsistentView(student_size=16, teacher_sizes=[32])
    packed = PackFunMatchInputs()(t(dict(img=img, gt_label=3)))
    assert packed['inputs']['student'].shape == (3, 16, 16)
    assert packed['inputs']['teachers'][0].shape == (3, 32, 32)
    assert packed['data_samples'].gt_label.item() == 3


def test_bad_values():
    with pytest.raises(ValueError, match='unknown mode'):
        ConsistentView(student_size=8, mode='fix/ic_ens')
    with pytest.raises(ValueError, match='scale'):
        ConsistentView(student_size=8, scale=(0.0, 1.0))
    with pytest.raises(ValueError, match='interpolation'):
        ConsistentView(student_size=8, interpolation='lanczos9')
