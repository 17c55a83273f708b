"""Store the teacher's mean prediction over many inception crops per image.

The target of the paper's ``fix/ic_ens`` ablation baseline (figure 3): for
every training image of CONFIG, the teacher(s) of CONFIG's FunMatchDistiller
predict on ``num_crops`` inception crops (1024 in the paper), and the log of
the mean probability is written to OUT, one ``.npz`` that
``StoredTeacherDataset`` serves during training (format:
mmfunmatch/datasets/stored_teacher.py).

    python tools/precompute_teacher.py CONFIG OUT [--num-crops 1024]

Crop settings come from ``precompute_teacher = dict(num_crops, scale, ratio,
flip_prob, seed)`` in CONFIG (command-line flags override), defaulting to the
paper's inception crop (area 5-100 %, aspect 3/4-4/3, flip 0.5). The crops of
an image depend only on its key and the seed, so results do not depend on
order, batch size or interruptions.

Resumable: results are written every ``--save-every`` images to
``OUT.partial/`` and a rerun continues from them (``--max-images`` stops a
run early on purpose, e.g. to fit a job's time limit); OUT is written once
at the end and the partial folder removed.

Cost: images x crops teacher forwards. The digits demo (200 images x 1024
crops, configs/funmatch/ablation/digits_fix_ic_ens.py) takes about 5 minutes
on one CPU core; ImageNet with 1024 crops is 1.3e9 R152x2 forwards, the scale
of the paper's TPU runs. Use a GPU (--device).
"""
import argparse
import copy
import glob
import os
import os.path as osp
import shutil
import sys
import zlib
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.registry import init_default_scope
from tqdm import tqdm

import mmfunmatch  # noqa: F401  (registers everything, applies compat)
from mmfunmatch.datasets.stored_teacher import (load_stored_teacher,
                                                sample_key,
                                                save_stored_teacher)
from mmfunmatch.datasets.transforms import ConsistentView
from mmfunmatch.models.algorithms.funmatch_distiller import combine_teachers
from mmfunmatch.models.teacher_spec import teacher_specs
from mmfunmatch.utils import dataset_chain, to_hw
from mmpretrain.registry import DATASETS, MODELS

DEFAULTS = dict(num_crops=1024, scale=(0.05, 1.0), ratio=(3. / 4., 4. / 3.),
                flip_prob=0.5, seed=0)
# Settings that must agree between a partial result and the run resuming it.
SETTING_KEYS = ('num_crops', 'seed', 'scale', 'ratio', 'flip_prob', 'sizes')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Store the teacher\'s mean prediction over inception '
        'crops for every training image (the fix/ic_ens baseline).')
    parser.add_argument('config', help='a FunMatchDistiller config')
    parser.add_argument('out', help='the .npz file to write')
    parser.add_argument('--num-crops', type=int, help='crops per image')
    parser.add_argument('--seed', type=int, help='crop seed')
    parser.add_argument('--batch-size', type=int, default=256,
                        help='crops per teacher forward (default 256)')
    parser.add_argument('--save-every', type=int, default=1000,
                        help='images per partial file (default 1000)')
    parser.add_argument('--max-images', type=int,
                        help='stop after this many new images; rerun to go on')
    parser.add_argument('--device', default=None,
                        help='cuda or cpu (default: cuda when available)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def image_dataset(cfg: Config):
    """The training images, decoded as the config decodes them, uncropped."""
    ds_cfg = copy.deepcopy(dataset_chain(cfg.train_dataloader.dataset)[-1])
    pipeline = ds_cfg.get('pipeline') or []
    load = [s for s in pipeline if str(s.get('type')).endswith(
        'LoadImageFromFile')] or [dict(type='LoadImageFromFile')]
    ds_cfg['pipeline'] = load[:1]
    ds_cfg['test_mode'] = True  # no re-fetching of another sample
    return DATASETS.build(ds_cfg)


def crop_settings(cfg: Config, args: argparse.Namespace) -> dict:
    settings = dict(DEFAULTS, **(cfg.get('precompute_teacher') or {}))
    if args.num_crops is not None:
        settings['num_crops'] = args.num_crops
    if args.seed is not None:
        settings['seed'] = args.seed
    sizes = []
    for t in teacher_specs(cfg.model.get('teachers') or []):
        if not t.checkpoint:
            raise SystemExit(f'{t.key}.checkpoint is not set: the outputs '
                             f'of a random teacher are worth nothing.')
        if t.size is None:
            raise SystemExit(f'{t.key}.size is not set; the tool renders '
                             f'each teacher\'s crops at its size.')
        size = t.size
        sizes.append(list(to_hw(size)))
    if not sizes:
        raise SystemExit('CONFIG has no model.teachers (a FunMatchDistiller '
                         'config is needed).')
    return dict(num_crops=int(settings['num_crops']),
                seed=int(settings['seed']),
                scale=np.asarray(settings['scale'], dtype=np.float64),
                ratio=np.asarray(settings['ratio'], dtype=np.float64),
                flip_prob=float(settings['flip_prob']),
                sizes=np.asarray(sizes, dtype=np.int64))


def same_settings(a: dict, b: dict) -> bool:
    return all(
        k in a and k in b and np.shape(a[k]) == np.shape(b[k])
        and np.allclose(a[k], b[k]) for k in SETTING_KEYS)


def crop_seed(key: str, seed: int) -> int:
    """The crops of an image depend on its key and the seed only."""
    return (zlib.crc32(key.encode('utf-8')) + seed * 1_000_003) % 2**32


class TeacherCrops:
    """Mean teacher probability over inception crops of one image."""

    def __init__(self, model, settings: dict, interpolation: str,
                 batch_size: int) -> None:
        self.model = model
        self.settings = settings
        self.sizes = [tuple(int(v) for v in s) for s in settings['sizes']]
        self.view = ConsistentView(
            mode='same/ic', student_size=self.sizes[0],
            teacher_sizes=self.sizes, scale=tuple(settings['scale']),
            ratio=tuple(settings['ratio']),
            flip_prob=settings['flip_prob'], interpolation=interpolation)
        self.batch_size = batch_size
        # sum_kl trains on each teacher; its mean prediction is the
        # probability-space ensemble.
        mode = model.teacher_combine
        self.combine = 'mean_probs' if mode == 'sum_kl' else mode

    @staticmethod
    def _chw(patch: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))

    @torch.no_grad()
    def __call__(self, img: np.ndarray, key: str) -> np.ndarray:
        h, w = img.shape[:2]
        np.random.seed(crop_seed(key, self.settings['seed']))
        crops = [self.view.draw_box('ic', h, w)
                 for _ in range(self.settings['num_crops'])]
        prob_sum = None
        for start in range(0, len(crops), self.batch_size):
            chunk = crops[start:start + self.batch_size]
            raw = [
                torch.stack([
                    self._chw(self.view.render(img, box, flip, size))
                    for box, flip in chunk
                ]) for size in self.sizes
            ]
            data = self.model.data_preprocessor(
                dict(inputs=dict(student=raw[0], teachers=raw),
                     data_samples=None), False)
            logits = self.model.teacher_logits(data['inputs']['teachers'])
            probs = combine_teachers(logits, self.combine).softmax(-1)
            part = probs.double().sum(0)
            prob_sum = part if prob_sum is None else prob_sum + part
        mean = (prob_sum / len(crops)).clamp_min(torch.finfo(
            torch.float32).tiny)
        return mean.log().float().cpu().numpy()


def read_partial(folder: str, settings: dict) -> Dict[str, np.ndarray]:
    done: Dict[str, np.ndarray] = {}
    for path in sorted(glob.glob(osp.join(folder, 'shard_*.npz'))):
        keys, logits, saved = load_stored_teacher(path)
        if not same_settings(saved, settings):
            raise SystemExit(
                f'{path} was computed with other crop settings; use the same '
                f'settings or delete {folder} to start over.')
        done.update(zip(keys.tolist(), logits))
    return done


def write_shard(folder: str, keys: Sequence[str], logits: Sequence,
                settings: dict) -> None:
    os.makedirs(folder, exist_ok=True)
    n = len(glob.glob(osp.join(folder, 'shard_*.npz')))
    save_stored_teacher(
        osp.join(folder, f'shard_{n:06d}.npz'), keys, np.stack(logits),
        **settings)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    settings = crop_settings(cfg, args)

    dataset = image_dataset(cfg)
    root = getattr(dataset, 'data_root', None)
    keys = [sample_key(dataset.get_data_info(i)['img_path'], root)
            for i in range(len(dataset))]
    if osp.isfile(args.out):
        stored_keys, _, saved = load_stored_teacher(args.out)
        if same_settings(saved, settings) and set(keys) <= set(
                stored_keys.tolist()):
            print(f'{args.out} already holds all {len(keys)} images.')
            return 0
        raise SystemExit(f'{args.out} exists but was computed for other '
                         f'images or settings; delete it to recompute.')

    partial = args.out + '.partial'
    done = read_partial(partial, settings)
    todo = [i for i, k in enumerate(keys) if k not in done]
    if done:
        print(f'resuming: {len(keys) - len(todo)} of {len(keys)} images '
              f'done in {partial}')

    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model = MODELS.build(cfg.model).to(device).eval()
    # Render the crops as the student's pipeline renders its views.
    interpolation = next(
        (s.get('interpolation', 'bilinear')
         for s in copy.deepcopy(dataset_chain(cfg.train_dataloader.dataset)[-1]).get('pipeline') or []
         if s.get('type') == 'ConsistentView'), 'bilinear')
    teacher = TeacherCrops(model, settings, interpolation, args.batch_size)

    if args.max_images is not None:
        todo = todo[:args.max_images]
    buf_keys, buf_logits = [], []
    for i in tqdm(todo, desc='teacher crops', unit='img', file=sys.stdout):
        buf_keys.append(keys[i])
        buf_logits.append(teacher(dataset[i]['img'], keys[i]))
        if len(buf_keys) >= args.save_every:
            write_shard(partial, buf_keys, buf_logits, settings)
            done.update(zip(buf_keys, buf_logits))
            buf_keys, buf_logits = [], []
    if buf_keys:
        write_shard(partial, buf_keys, buf_logits, settings)
        done.update(zip(buf_keys, buf_logits))

    missing = [k for k in keys if k not in done]
    if missing:
        print(f'stopped with {len(keys) - len(missing)} of {len(keys)} images '
              f'done; rerun the same command to continue.')
        return 0
    ordered = list(dict.fromkeys(keys))  # dataset order, duplicates once
    save_stored_teacher(args.out, ordered,
                        np.stack([done[k] for k in ordered]), **settings)
    shutil.rmtree(partial, ignore_errors=True)
    print(f'wrote {args.out}: {len(ordered)} images x '
          f'{settings["num_crops"]} crops')
    return 0

