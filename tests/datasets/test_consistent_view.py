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


# -- equal views are rendered once --------------------------------------------
@pytest.mark.parametrize('mode', ['same/ic', 'same/rc', 'eval', 'fix/rs'])
def test_equal_views_are_one_array_bitwise_the_rendered_one(
        digits_root, mode):
    img = real_image(digits_root, (120, 96))
    t = ConsistentView(student_size=24, teacher_sizes=[24, 40, 24], mode=mode)
    for seed in range(5):
        out = run(t, img, seed)
        s, (t0, t1, t2) = out['img'], out['teacher_imgs']
        # The two 24 px teachers read the student's array: rendered once.
        assert t0 is s and t2 is s and t1 is not s
        # ... and it is bitwise what rendering each view alone gives.
        for view, box, size in zip((t0, t1, t2), out['teacher_crop_bboxes'],
                                   (24, 40, 24)):
            ref = t.render(img, box, out['flip'], (size, size))
            assert view.shape == ref.shape
            np.testing.assert_array_equal(view, ref)


@pytest.mark.parametrize('mode', ['ind/ic', 'ind/rc', 'fix/cc'])
def test_own_crops_are_shared_only_when_the_box_is_the_same(
        digits_root, mode):
    img = real_image(digits_root, (120, 96))
    t = ConsistentView(student_size=24, teacher_sizes=[24], mode=mode)
    distinct = 0
    for seed in range(10):
        out = run(t, img, seed)
        view = out['teacher_imgs'][0]
        same_box = out['teacher_crop_bboxes'][0] == out['crop_bbox']
        distinct += view is not out['img']
        if not same_box:
            assert view is not out['img']
            assert np.abs(view.astype(np.float32) - out['img']).mean() > 1
    assert distinct >= 5


def test_packing_sends_a_shared_view_once(digits_root):
    img = real_image(digits_root, (120, 96))
    t = ConsistentView(student_size=16, teacher_sizes=[16, 32, 16])
    np.random.seed(0)
    packed = PackFunMatchInputs()(t(dict(img=img, gt_label=3)))
    student, teachers = (packed['inputs']['student'],
                         packed['inputs']['teachers'])
    assert student.shape == (3, 16, 16)
    # Teachers 0 and 2 read view 0 (the student's); teacher 1 has its own.
    assert teachers[0] == 0 and teachers[2] == 0
    assert teachers[1].shape == (3, 32, 32)


def test_packing_does_not_share_a_replaced_view(digits_root):
    """A transform after ConsistentView that replaces the student's image
    must not change what the teacher gets."""
    img = real_image(digits_root, (120, 96))
    t = ConsistentView(student_size=16, teacher_sizes=[16])
    np.random.seed(0)
    results = t(dict(img=img))
    teacher = results['teacher_imgs'][0].copy()
    results['img'] = 255 - results['img']
    packed = PackFunMatchInputs()(results)
    np.testing.assert_array_equal(
        packed['inputs']['teachers'][0].permute(1, 2, 0).numpy(), teacher)


# -- per-teacher eval crops ---------------------------------------------------
@pytest.mark.parametrize('wh', [(120, 96), (96, 120), (100, 100)])
def test_teacher_eval_view_at_crop_1_is_the_whole_centre_square(
        digits_root, wh):
    img = real_image(digits_root, wh)
    t = ConsistentView(student_size=32, teacher_sizes=[32, 48], mode='eval',
                       crop_frac=0.875, teacher_crop_fracs=[1.0, 1.0])
    out = run(t, img, 0)
    # Hand-written: the centre square of side = short side, resized.
    w, h = wh
    side = min(h, w)
    x0, y0 = (w - side) // 2, (h - side) // 2
    square = img[y0:y0 + side, x0:x0 + side]
    for view, size in zip(out['teacher_imgs'], (32, 48)):
        ref = cv2.resize(square, (size, size), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(view, ref)
    assert out['teacher_crop_bboxes'] == [(x0, y0, side, side)] * 2
    # The student keeps its own 0.875 centre crop, so the equal-size
    # teacher view is a different array with different pixels.
    s_side = int(round(side * 0.875))
    sx, sy = (w - s_side) // 2, (h - s_side) // 2
    assert out['crop_bbox'] == (sx, sy, s_side, s_side)
    np.testing.assert_array_equal(
        out['img'],
        cv2.resize(img[sy:sy + s_side, sx:sx + s_side], (32, 32),
                   interpolation=cv2.INTER_LINEAR))
    assert out['teacher_imgs'][0] is not out['img']
    assert np.abs(out['teacher_imgs'][0].astype(np.float32) -
                  out['img']).mean() > 1


def test_teacher_crop_frac_equal_to_the_student_s_keeps_the_shared_view(
        digits_root):
    img = real_image(digits_root, (120, 96))
    t = ConsistentView(student_size=32, teacher_sizes=[32, 32], mode='eval',
                       crop_frac=0.875, teacher_crop_fracs=[0.875, 1.0])
    out = run(t, img, 0)
    assert out['teacher_imgs'][0] is out['img']
    assert out['teacher_imgs'][1] is not out['img']


def test_teacher_crop_fracs_in_fix_cc_set_the_teacher_s_square(digits_root):
    img = real_image(digits_root, (80, 60))  # w=80, h=60
    t = ConsistentView(student_size=20, teacher_sizes=[20], mode='fix/cc',
                       crop_frac=0.5, teacher_crop_fracs=[1.0])
    out = run(t, img, 0)
    assert out['teacher_crop_bboxes'] == [(10, 0, 60, 60)]
    assert out['crop_bbox'][2:] == (30, 30)


def test_bad_teacher_crop_fracs():
    with pytest.raises(ValueError, match='one crop fraction per teacher'):
        ConsistentView(student_size=8, teacher_sizes=[8, 8], mode='eval',
                       teacher_crop_fracs=[1.0])
    with pytest.raises(ValueError, match=r'teacher_crop_fracs\[0\]'):
        ConsistentView(student_size=8, teacher_sizes=[8], mode='eval',
                       teacher_crop_fracs=[1.5])
    for mode in ('same/ic', 'same/rc', 'ind/ic', 'fix/rs'):
        with pytest.raises(ValueError, match="mode 'eval'"):
            ConsistentView(student_size=8, teacher_sizes=[8], mode=mode,
                           teacher_crop_fracs=[1.0])
    # Equal to crop_frac: nothing to apply, nothing wrong.
    ConsistentView(student_size=8, teacher_sizes=[8], mode='same/ic',
                   crop_frac=0.875, teacher_crop_fracs=[0.875])


def test_dropping_teacher_views_keeps_the_student_s_draws(digits_root):
    """A replay run renders the student's view only; its box, flip and
    pixels are those of the full transform, in every mode (the teachers'
    own boxes in ind/* are drawn after the student's), and the packed
    metainfo carries the box and flip the store records."""
    img = real_image(digits_root, (120, 96))
    for mode in ('same/ic', 'ind/ic', 'ind/rc', 'fix/cc'):
        full = ConsistentView(student_size=24, teacher_sizes=[32], mode=mode)
        alone = ConsistentView(student_size=24, teacher_sizes=[32], mode=mode)
        alone.drop_teacher_views()
        for seed in range(5):
            a, b = run(full, img, seed), run(alone, img, seed)
            assert b['teacher_imgs'] == []
            assert (a['crop_bbox'], a['flip']) == (b['crop_bbox'], b['flip'])
            np.testing.assert_array_equal(a['img'], b['img'])
            meta = PackFunMatchInputs()(b)['data_samples'].metainfo
            assert (tuple(meta['crop_bbox']), meta['flip']) == (
                b['crop_bbox'], b['flip'])
