"""scikit-learn's handwritten digits written as an image folder.

The demo and the end-to-end tests need real images read by mmpretrain's
``CustomDataset``; this is the one data set that installs with a package.

Layout (mmpretrain's ImageNet-style folder of class sub-folders)::

    root/train/<digit>/<index>.png        the teacher's labelled data
    root/train_small/<digit>/<index>.png  the students' distillation set
    root/val/<digit>/<index>.png          evaluation

Split (fixed, seed 0): a stratified 500-image val set; the remaining 1,297
images are ``train``; ``train_small`` is the first ``small_per_class`` train
images of each class. The teacher sees all of ``train``; students see only
``train_small``, mirroring the paper's setting where the teacher knows far
more than the distillation set conveys.
"""
import argparse
import json
import os
from typing import Dict, List, Optional

import numpy as np

SPLIT_SEED = 0
VAL_SIZE = 500
CLASSES = tuple(str(i) for i in range(10))


def _split_indices(labels: np.ndarray, small_per_class: int
                   ) -> Dict[str, np.ndarray]:
    rng = np.random.RandomState(SPLIT_SEED)
    order = rng.permutation(len(labels))
    val, train = [], []
    per_class_val = VAL_SIZE // len(CLASSES)
    taken = {c: 0 for c in range(len(CLASSES))}
    for i in order:
        c = int(labels[i])
        if taken[c] < per_class_val:
            val.append(i)
            taken[c] += 1
        else:
            train.append(i)
    seen = {c: 0 for c in range(len(CLASSES))}
    small = []
    for i in train:
        c = int(labels[i])
        if seen[c] < small_per_class:
            small.append(i)
            seen[c] += 1
    return dict(train=np.array(train), train_small=np.array(small),
                val=np.array(val))


def write_digits(root: str, size: int = 32, small_per_class: int = 20,
                 ) -> Dict[str, int]:
    """Write the digits to ``root`` as RGB PNG files of ``size`` pixels.

    The 8 x 8 grey images (values 0-16) are scaled to 0-255, upsampled with
    bicubic interpolation and saved as 3-channel images. Writing is skipped
    when ``root/meta.json`` records the same settings. Returns the number of
    images per split.
    """
    from PIL import Image
    from sklearn.datasets import load_digits

    settings = dict(size=size, small_per_class=small_per_class,
                    seed=SPLIT_SEED, val=VAL_SIZE)
    meta_path = os.path.join(root, 'meta.json')
    if os.path.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get('settings') == settings:
            return meta['counts']

    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)
    splits = _split_indices(digits.target, small_per_class)
    counts = {}
    for split, indices in splits.items():
        for c in CLASSES:
            os.makedirs(os.path.join(root, split, c), exist_ok=True)
        for i in indices:
            img = Image.fromarray(images[i]).resize((size, size),
                                                    Image.BICUBIC)
            img.convert('RGB').save(
                os.path.join(root, split, str(digits.target[i]),
                             f'{i:04d}.png'))
        counts[split] = int(len(indices))
    with open(meta_path, 'w') as f:
        json.dump(dict(settings=settings, counts=counts), f, indent=1)
    return counts


# -- the command line (tools/prepare_digits.py) ------------------------------
def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='Write scikit-learn\'s digits as an image folder: '
        '`tools/prepare_digits.py ROOT`.')
    parser.add_argument('root', nargs='?', default='data/digits')
    parser.add_argument('--size', type=int, default=32)
    parser.add_argument('--small-per-class', type=int, default=20)
    args = parser.parse_args(argv)
    counts = write_digits(args.root, args.size, args.small_per_class)
    print(f'digits written to {args.root}: {counts}')
