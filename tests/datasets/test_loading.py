"""SafeLoadImageFromFile (mmfunmatch/datasets/transforms/loading.py): every
colour mode becomes 8-bit BGR, a corrupt file stops naming it or is skipped
and counted, on its own and through the real runner (marked slow)."""
import os.path as osp
import re

import numpy as np
import pytest
from mmengine.runner import Runner
from PIL import Image

from mmfunmatch.datasets.transforms import (CorruptImageError,
                                            SafeLoadImageFromFile)
from tests.helpers import image_folder, tiny_cfg, truncate


def _write_modes(folder) -> dict:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    files = {}
    for name, img in (
            ('grey.png', Image.fromarray(rgb[..., 0])),
            ('rgba.png', Image.fromarray(np.dstack([rgb, rgb[..., :1]]))),
            ('cmyk.jpg', Image.fromarray(rgb).convert('CMYK')),
            ('palette.png', Image.fromarray(rgb).convert('P')),
            ('grey16.png',
             Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)),
            ('rgb.jpg', Image.fromarray(rgb))):
        path = str(folder / name)
        img.save(path)
        files[name] = path
    return files


def test_colour_modes_are_converted(tmp_path):
    files = _write_modes(tmp_path)
    load = SafeLoadImageFromFile()
    for name, path in files.items():
        img = load(dict(img_path=path))['img']
        assert img.shape == (12, 10, 3) and img.dtype == np.uint8, name
        with Image.open(path) as pil:
            mode = pil.mode
            rgb = np.asarray(pil.convert('RGB')) if mode != 'I;16' else None
        if rgb is not None:  # BGR, as OpenCV decodes
            np.testing.assert_array_equal(img, rgb[..., ::-1], err_msg=name)
    grey16 = load(dict(img_path=files['grey16.png']))['img']
    grey8 = load(dict(img_path=files['grey.png']))['img']
    np.testing.assert_array_equal(grey16, grey8)
    white = SafeLoadImageFromFile(alpha_background=(255, 255, 255))
    assert white(dict(img_path=files['rgba.png']))['img'].mean() > \
        load(dict(img_path=files['rgba.png']))['img'].mean()


def test_corrupt_images_stop_by_default_and_are_skipped_on_request(tmp_path):
    files = _write_modes(tmp_path)
    bad = {
        'truncated.jpg': lambda p: truncate(files['rgb.jpg'], p),
        'truncated.png': lambda p: truncate(files['rgba.png'], p),
        'not_an_image.png': lambda p: open(p, 'wb').write(b'\x89PNG' * 9),
    }
    skip = SafeLoadImageFromFile(skip_corrupt=True)
    for i, (name, make) in enumerate(bad.items(), 1):
        path = str(tmp_path / name)
        make(path)
        with pytest.raises(CorruptImageError, match=re.escape(path)):
            SafeLoadImageFromFile()(dict(img_path=path))
        assert skip(dict(img_path=path)) is None
        assert skip.num_skipped == i


@pytest.mark.slow
def test_a_corrupt_file_stops_the_run_naming_it_or_is_skipped(tmp_path):
    root = image_folder(str(tmp_path / 'data'), corrupt=True)
    broken = osp.join(root, 'a', '0.png')
    for loader in ('LoadImageFromFile', 'SafeLoadImageFromFile'):
        cfg = tiny_cfg(str(tmp_path / loader), root, f'stop_{loader}')
        cfg.train_dataloader.dataset.pipeline[0] = dict(type=loader)
        with pytest.raises(Exception, match=re.escape(broken)):
            Runner.from_cfg(cfg).train()
    # Skipped: counted across two dataloader workers, training completes.
    cfg = tiny_cfg(str(tmp_path / 'skip'), root, 'skip', num_workers=2,
                   persistent_workers=True)
    cfg.train_dataloader.dataset.pipeline[0] = dict(
        type='SafeLoadImageFromFile', skip_corrupt=True)
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 8
    load = runner.train_dataloader.dataset.pipeline.transforms[1]
    assert isinstance(load, SafeLoadImageFromFile)
    assert load.num_skipped >= 2  # drawn once per epoch (and maybe as a
    # random replacement)
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        log = f.read()
    assert f'skipped corrupt image {broken}' in log
