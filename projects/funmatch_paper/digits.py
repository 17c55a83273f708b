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

A harder split (``write_fewshot``, the paper's flowers102 manner: teacher
strong, student data tiny) cuts ``train`` in two, disjointly::

    root/train_few<N>/<digit>/<index>.png   the first N train images of
                                            each class: the students' set
    root/train_rest<N>/<digit>/<index>.png  the other train images: the
                                            teacher's set

``val`` is the same 500 images as above, outside both.
"""
import argparse
import json
import os
from typing import Callable, Dict, List, Optional

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


def fewshot_split(labels: np.ndarray, per_class: int
                  ) -> Dict[str, np.ndarray]:
    """Indices of ``train_few<N>`` (the first ``per_class`` ``train``
    images of each class, in the fixed split order), ``train_rest<N>`` (the
    other ``train`` images) and ``val`` (unchanged)."""
    if per_class < 1:
        raise ValueError(f'per_class={per_class}: give at least 1 image per '
                         f'class for the students')
    base = _split_indices(labels, small_per_class=0)
    seen = {c: 0 for c in range(len(CLASSES))}
    few, rest = [], []
    for i in base['train']:
        c = int(labels[i])
        if seen[c] < per_class:
            few.append(i)
            seen[c] += 1
        else:
            rest.append(i)
    short = [CLASSES[c] for c, n in seen.items() if n < per_class]
    if short:
        raise ValueError(f'per_class={per_class}: classes {short} have fewer '
                         f'train images; choose a smaller per_class')
    return {f'train_few{per_class}': np.array(few),
            f'train_rest{per_class}': np.array(rest), 'val': base['val']}


def _write_split(root: str, meta_name: str, settings: dict, size: int,
                 make_splits: Callable[[np.ndarray], Dict[str, np.ndarray]]
                 ) -> Dict[str, int]:
    """Write ``make_splits(labels)`` (split name -> indices) as class
    folders under ``root``; skipped when ``root/<meta_name>`` records the
    same settings."""
    from PIL import Image
    from sklearn.datasets import load_digits
    meta_path = os.path.join(root, meta_name)
    if os.path.isfile(meta_path):
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get('settings') == settings:
            return meta['counts']

    digits = load_digits()
    images = (digits.images / 16.0 * 255.0).clip(0, 255).astype(np.uint8)
    counts = {}
    for split, indices in make_splits(digits.target).items():
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


def write_fewshot(root: str, per_class: int = 10, size: int = 32
                  ) -> Dict[str, int]:
    """Write ``train_few<per_class>`` and ``train_rest<per_class>`` (see
    the module docstring) beside the other splits, as ``write_digits``
    writes its images, and ``val`` unless ``write_digits`` wrote it at this
    size. Skipped when ``root/fewshot<per_class>.json`` records the same
    settings. Returns the number of images per split written."""
    settings = dict(size=size, per_class=per_class, seed=SPLIT_SEED,
                    val=VAL_SIZE)
    meta = os.path.join(root, 'meta.json')
    val_there = False
    if os.path.isfile(meta):
        with open(meta) as f:
            val_there = json.load(f)['settings'].get('size') == size

    def splits(labels: np.ndarray) -> Dict[str, np.ndarray]:
        out = fewshot_split(labels, per_class)
        if val_there:  # the same indices, already on disk
            out.pop('val')
        return out

    return _write_split(root, f'fewshot{per_class}.json', settings, size,
                        splits)


def write_digits(root: str, size: int = 32, small_per_class: int = 20,
                 ) -> Dict[str, int]:
    """Write the digits to ``root`` as RGB PNG files of ``size`` pixels.

    The 8 x 8 grey images (values 0-16) are scaled to 0-255, upsampled with
    bicubic interpolation and saved as 3-channel images. Writing is skipped
    when ``root/meta.json`` records the same settings. Returns the number of
    images per split.
    """
    settings = dict(size=size, small_per_class=small_per_class,
                    seed=SPLIT_SEED, val=VAL_SIZE)
    return _write_split(
        root, 'meta.json', settings, size,
        lambda labels: _split_indices(labels, small_per_class))


# -- the command line (tools/prepare_digits.py) ------------------------------
def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description='Write scikit-learn\'s digits as an image folder: '
        '`tools/prepare_digits.py ROOT`.')
    parser.add_argument('root', nargs='?', default='data/digits')
    parser.add_argument('--size', type=int, default=32)
    parser.add_argument('--small-per-class', type=int, default=20)
    parser.add_argument('--few-per-class', type=int,
                        help='also write the harder split train_few<N> / '
                        'train_rest<N> (see write_fewshot)')
    args = parser.parse_args(argv)
    counts = write_digits(args.root, args.size, args.small_per_class)
    if args.few_per_class:
        counts.update(write_fewshot(args.root, args.few_per_class,
                                    args.size))
    print(f'digits written to {args.root}: {counts}')
