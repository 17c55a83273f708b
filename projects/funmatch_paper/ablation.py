"""The paper's figure-3 ablation on the digits demo, through tools/train.py.

Every setting (fix/rs, fix/cc, fix/ic_ens, ind/rc, ind/ic, same/rc, same/ic,
funmatch; configs/funmatch/ablation/digits_<name>.py) distils the same
teacher into the same student on the same 200 ``train_small`` images with
the same optimizer and number of steps, for every seed and schedule length.
Only how the teacher's and the student's inputs are drawn differs.

Each run is a ``tools/train.py`` subprocess with its own work directory
``WORK/runs/<setting>/ep<E>/seed<S>``; its numbers are read from mmengine's
``vis_data/scalars.json``. A finished run (complete final checkpoint and a
validation at the final epoch) is never trained again, and an unfinished one
continues from its newest complete checkpoint (``--resume``).

Run it with ``python tools/ablation_study.py``.
"""
import argparse
import csv
import glob
import json
import math
import os
import os.path as osp
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from mmfunmatch.utils import dataset_chain

# The checkout: the folder above projects/.
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ABLATION_CONFIGS = osp.join(REPO, 'configs', 'funmatch', 'ablation')
TEACHER_CONFIG = osp.join(REPO, 'configs', 'funmatch', 'demo',
                          'digits_teacher.py')
# The paper's figure 3, in its order (docs/method.md).
SETTINGS = ('fix/rs', 'fix/cc', 'fix/ic_ens', 'ind/rc', 'ind/ic', 'same/rc',
            'same/ic', 'funmatch')
# Settings outside the figure that a config folder may hold
# (configs/funmatch/fewshot/digits_label.py: the label-only student).
EXTRA_SETTINGS = ('label', )
# Train folders of the harder split (digits.write_fewshot): train_few<N>
# for the students, train_rest<N> for the teacher.
FEWSHOT_PREFIX = re.compile(r'^train_(?:few|rest)(\d+)$')
CSV_FIELDS = ('setting', 'seed', 'epochs', 'val_top1', 'agreement',
              'train_distill_loss', 'val_kl', 'iters', 'wall_s', 'work_dir')
RESULT_FILE = 'ablation_result.json'
# Cost model for the plan printed before a study: CPU seconds measured on
# the development machine (ResNet-18 w8 student + w16 teacher at 16 px,
# batch 32, one thread): student step + teacher forward + data loading per
# iteration; process start-up, validations and checkpoints per run; one
# teacher forward and crop per stored crop of fix/ic_ens.
SEC_PER_ITER = 0.22
SEC_PER_RUN = 15.0
SEC_PER_CROP = 6e-4
# The demo teacher (ResNet-18 w16, batch 64): per iteration, 20 per epoch.
SEC_PER_TEACHER_ITER = 0.35


def config_path(setting: str, config_dir: str = ABLATION_CONFIGS) -> str:
    """``digits_<setting with / replaced by _>.py`` in ``config_dir``."""
    return osp.join(config_dir, f'digits_{setting.replace("/", "_")}.py')


def setting_of(config: str) -> str:
    """The setting name of an ablation config path (its file name, for
    configs outside the figure)."""
    for name in SETTINGS + EXTRA_SETTINGS:
        if osp.basename(config) == osp.basename(config_path(name)):
            return name
    return osp.splitext(osp.basename(config))[0]


def schedule_options(epochs: int) -> List[str]:
    """``--cfg-options`` that shorten a demo config's epoch schedule
    (warm-up a tenth, then the cosine to the end) to ``epochs``, with one
    validation and one checkpoint at the end."""
    warmup = max(1, epochs // 10)
    return [f'train_cfg.max_epochs={epochs}',
            f'train_cfg.val_interval={epochs}',
            f'default_hooks.checkpoint.interval={epochs}',
            f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={epochs}']


def _slug(setting: str) -> str:
    return setting.replace('/', '_')


def parse_cfg_options(options: Optional[Sequence[str]]) -> dict:
    """``key=value`` strings as mmengine's ``--cfg-options`` reads them."""
    import argparse

    from mmengine.config import DictAction
    if not options:
        return {}
    ns = argparse.Namespace()
    DictAction(option_strings=['--cfg-options'], dest='opts')(None, ns,
                                                              list(options))
    return ns.opts


@dataclass(frozen=True)
class Run:
    """One training run of the study."""
    setting: str
    seed: int
    epochs: int
    config: str
    work_dir: str
    iters_per_epoch: int
    stored_teacher: bool

    @property
    def iters(self) -> int:
        return self.epochs * self.iters_per_epoch

    @property
    def name(self) -> str:
        return f'{self.setting} ep{self.epochs} seed{self.seed}'


class Study:
    """The plan, the runs and the outputs of one ablation study.

    Args:
        work_dir (str): Everything goes here: the teacher (unless given),
            the stored fix/ic_ens targets, one folder per run, the CSV, the
            figures and the markdown table.
        data_root (str): The digits image folder (written when missing).
        configs (Sequence[str]): Ablation configs, one per setting.
            Defaults to the paper's eight.
        seeds (Sequence[int]): Defaults to (0, 1, 2).
        epochs (Sequence[int]): Schedule lengths. Defaults to (30, 150).
        teacher (str, optional): A trained teacher checkpoint (e.g. the
            demo's); trained once with the demo teacher config when None.
        teacher_epochs (int, optional): Shorten that teacher's schedule.
        jobs (int): Runs in parallel. Defaults to 2.
        threads (int, optional): Torch threads per run. Defaults to
            cores / jobs.
        ens_crops (int, optional): Crops per image for fix/ic_ens. Defaults
            to the config's (1024, the paper's).
        val_points (int): Validations per run (for the curves).
            Defaults to 5.
        num_workers (int): Dataloader workers per run. Defaults to 1.
        cfg_options (Sequence[str], optional): ``key=value`` settings added to
            every student run.
        md_path (str, optional): Where to write the markdown table.
            Defaults to ``work_dir/<prefix>.md``.
        poll_s (float): Seconds between progress updates. Defaults to 2.
        names (Sequence[str], optional): A display name per config (the
            setting column, legends, run folders). Defaults to the figure's
            setting names, else the config file names.
        prefix (str): Name prefix of the CSV, figures and table. Defaults to
            'ablation'.
        teacher_config (str, optional): The config the teacher is trained
            with when ``teacher`` is None. Defaults to the demo teacher's
            (configs/funmatch/demo/digits_teacher.py).
        seed_major (bool): Run every length of one seed before the next
            seed, so that a study stopped early has whole seeds (curves over
            every length) rather than whole lengths. Defaults to False
            (short schedules first).
    """

    def __init__(self,
                 work_dir: str,
                 data_root: str,
                 configs: Optional[Sequence[str]] = None,
                 seeds: Sequence[int] = (0, 1, 2),
                 epochs: Sequence[int] = (30, 150),
                 teacher: Optional[str] = None,
                 teacher_epochs: Optional[int] = None,
                 jobs: int = 2,
                 threads: Optional[int] = None,
                 ens_crops: Optional[int] = None,
                 val_points: int = 5,
                 num_workers: int = 1,
                 cfg_options: Optional[Sequence[str]] = None,
                 md_path: Optional[str] = None,
                 poll_s: float = 2.0,
                 names: Optional[Sequence[str]] = None,
                 prefix: str = 'ablation',
                 teacher_config: Optional[str] = None,
                 seed_major: bool = False) -> None:
        self.work_dir = osp.abspath(work_dir)
        self.data_root = osp.abspath(data_root)
        self.configs = [osp.abspath(c) for c in (
            configs or [config_path(s) for s in SETTINGS])]
        self.seeds = list(seeds)
        self.epochs = sorted(set(int(e) for e in epochs))
        if self.epochs[0] < 2:
            raise ValueError('schedule lengths must be at least 2 epochs (the '
                             'demo schedule warms up, then decays)')
        self.teacher = osp.abspath(teacher) if teacher else None
        self.teacher_epochs = teacher_epochs
        self.jobs = max(1, jobs)
        self.threads = threads or max(1, (os.cpu_count() or 1) // self.jobs)
        self.ens_crops = ens_crops
        self.val_points = max(1, val_points)
        self.num_workers = num_workers
        self.cfg_options = list(cfg_options or [])
        self.md_path = md_path
        self.poll_s = poll_s
        if names is not None and len(names) != len(self.configs):
            raise ValueError(f'{len(names)} names for {len(self.configs)} '
                             f'configs: give one name per config')
        self.names = list(names) if names is not None else [
            setting_of(c) for c in self.configs]
        self.prefix = prefix
        self.teacher_config = osp.abspath(teacher_config or TEACHER_CONFIG)
        self.seed_major = seed_major
        self._cfgs: Dict[str, object] = {}

    @property
    def ens_crops_used(self) -> int:
        """Crops per image of the fix/ic_ens targets."""
        if self.ens_crops:
            return self.ens_crops
        for config in self.configs:
            pre = self._config(config).get('precompute_teacher')
            if pre and pre.get('num_crops'):
                return int(pre['num_crops'])
        return 1024

    @property
    def ens_file(self) -> str:
        # The crop count is in the name: another count is another file.
        return osp.join(self.work_dir,
                        f'teacher_ic_ens_{self.ens_crops_used}crops.npz')

    def teacher_path(self) -> str:
        """The given teacher, or where the one trained here ends up."""
        if self.teacher:
            return self.teacher
        from mmengine.config import Config
        epochs = (self.teacher_epochs or
                  Config.fromfile(self.teacher_config).train_cfg.max_epochs)
        return osp.join(self.work_dir, 'teacher', f'epoch_{epochs}.pth')

    # -- plan -----------------------------------------------------------------
    def _config(self, path: str):
        from mmengine.config import Config
        if path not in self._cfgs:
            cfg = Config.fromfile(path)
            extra = parse_cfg_options(self.cfg_options)
            if extra:
                cfg.merge_from_dict(extra)
            self._cfgs[path] = cfg
        return self._cfgs[path]

    def _iters_per_epoch(self, cfg) -> int:
        """Training iterations per epoch (the data set is counted, not
        loaded)."""
        import copy

        from mmengine.registry import init_default_scope
        from mmpretrain.registry import DATASETS

        import mmfunmatch  # noqa: F401
        init_default_scope('mmpretrain')
        inner = copy.deepcopy(dataset_chain(cfg.train_dataloader.dataset)[-1])
        inner.update(data_root=self.data_root, pipeline=[])
        n = len(DATASETS.build(inner))
        batch = cfg.train_dataloader.batch_size
        drop_last = cfg.train_dataloader.get('drop_last', False)
        return n // batch if drop_last else math.ceil(n / batch)

    def plan(self) -> List[Run]:
        """Every run: short schedules first (within each seed with
        ``seed_major``); within a length the stored-teacher runs last (their
        targets are computed meanwhile)."""
        runs = []
        for config, setting in zip(self.configs, self.names):
            cfg = self._config(config)
            stored = any(d.get('type') == 'StoredTeacherDataset'
                         for d in dataset_chain(cfg.train_dataloader.dataset))
            per_epoch = self._iters_per_epoch(cfg)
            for epochs in self.epochs:
                for seed in self.seeds:
                    runs.append(Run(
                        setting, seed, epochs, config,
                        osp.join(self.work_dir, 'runs', _slug(setting),
                                 f'ep{epochs}', f'seed{seed}'),
                        per_epoch, stored))
        if self.seed_major:
            return sorted(runs, key=lambda r: (
                r.seed, r.epochs, r.stored_teacher,
                self.configs.index(r.config)))
        return sorted(runs, key=lambda r: (r.epochs, r.stored_teacher, r.seed,
                                           self.configs.index(r.config)))

    def estimate_s(self, runs: Sequence[Run]) -> float:
        """Wall-clock estimate of ``runs`` on ``jobs`` idle cores (s)."""
        work = sum(r.iters * SEC_PER_ITER + SEC_PER_RUN for r in runs)
        if any(r.stored_teacher for r in runs) and not osp.isfile(
                self.ens_file):
            n = self._train_images()
            work += n * self.ens_crops_used * SEC_PER_CROP
        wall = work / min(self.jobs, os.cpu_count() or 1)
        if not self.teacher and not is_complete(self.teacher_path()):
            # Trained first, alone (one run of tools/train.py).
            epochs = int(osp.basename(self.teacher_path())[6:-4])
            wall += epochs * 20 * SEC_PER_TEACHER_ITER + SEC_PER_RUN
        return wall

    def fewshot_sizes(self) -> List[int]:
        """Images per class of the harder splits (``train_few<N>``,
        ``train_rest<N>``) that the student configs and, when it is trained
        here, the teacher config read."""
        from mmengine.config import Config
        cfgs = [self._config(c) for c in self.configs]
        if not self.teacher:
            cfgs.append(Config.fromfile(self.teacher_config))
        sizes = set()
        for cfg in cfgs:
            for d in dataset_chain(cfg.train_dataloader.dataset):
                m = FEWSHOT_PREFIX.match(str(d.get('data_prefix', '')))
                if m:
                    sizes.add(int(m.group(1)))
        return sorted(sizes)

    def _train_images(self) -> int:
        cfg = self._config(self.configs[0])
        return self._iters_per_epoch(cfg) * cfg.train_dataloader.batch_size

    # -- one run --------------------------------------------------------------
    def run_options(self, run: Run, teacher: str) -> List[str]:
        """``--cfg-options`` of ``run``: data, teacher, seed, schedule."""
        cfg = self._config(run.config)
        chain = dataset_chain(cfg.train_dataloader.dataset)
        train_ds = 'train_dataloader' + '.dataset' * len(chain)
        e = run.epochs
        warmup = max(1, e // 10)  # the demo's warm-up: a tenth
        val_every = max(1, e // self.val_points)
        opts = [
            f'{train_ds}.data_root={self.data_root}',
            f'val_dataloader.dataset.data_root={self.data_root}',
            f'test_dataloader.dataset.data_root={self.data_root}',
            f'model.teachers.0.checkpoint={teacher}',
            f'randomness.seed={run.seed}',
            f'train_cfg.max_epochs={e}',
            f'train_cfg.val_interval={val_every}',
            f'param_scheduler.0.end={warmup}',
            f'param_scheduler.1.begin={warmup}',
            f'param_scheduler.1.end={e}',
            # A resume point every val interval; one kept.
            f'default_hooks.checkpoint.interval={val_every}',
            'default_hooks.checkpoint.max_keep_ckpts=1',
            f'train_dataloader.num_workers={self.num_workers}',
            f'val_dataloader.num_workers={self.num_workers}',
        ]
        if self.num_workers == 0:
            opts += ['train_dataloader.persistent_workers=False',
                     'val_dataloader.persistent_workers=False']
        if run.stored_teacher:
            opts.append(f'train_dataloader.dataset.teacher_file='
                        f'{self.ens_file}')
        return opts + self.cfg_options

    def _env(self) -> dict:
        env = dict(os.environ)
        for key in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS'):
            env[key] = str(self.threads)
        return env

    def _spawn(self, cmd: List[str], log_path: str) -> subprocess.Popen:
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        log = open(log_path, 'a')
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log,
                                stderr=subprocess.STDOUT, env=self._env())
        proc.log = log
        return proc

    def _wait(self, proc: subprocess.Popen, what: str, log_path: str,
              tick=None) -> None:
        while proc.poll() is None:
            time.sleep(self.poll_s)
            if tick is not None:
                tick()
        proc.log.close()
        if tick is not None:
            tick()
        if proc.returncode != 0:
            raise RuntimeError(f'{what} failed (exit {proc.returncode}); see '
                               f'{log_path}')

    def train_run(self, run: Run, teacher: str, bar=None,
                  study_bar=None) -> float:
        """Train (or continue) ``run``; return its wall time in s."""
        cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'), run.config,
               '--work-dir', run.work_dir, '--resume', '--cfg-options'
               ] + self.run_options(run, teacher)
        log_path = osp.join(run.work_dir, 'train.log')
        start = time.time()
        done = [current_iter(run.work_dir)]
        if bar is not None:
            bar.reset(total=run.iters)
            bar.set_description(run.name)
            bar.update(done[0])

        def tick() -> None:
            now = current_iter(run.work_dir)
            if now > done[0]:
                if bar is not None:
                    bar.update(now - done[0])
                if study_bar is not None:
                    study_bar.update(now - done[0])
                done[0] = now

        proc = self._spawn(cmd, log_path)
        self._wait(proc, f'training {run.name}', log_path, tick)
        if not has_final_val(run.work_dir, run.epochs):
            # Killed between the last checkpoint and its validation before:
            # the resumed loop has nothing left to train, so test it.
            self.test_final(run, teacher)
        return time.time() - start

    def test_final(self, run: Run, teacher: str) -> None:
        """Evaluate the final checkpoint with tools/test.py."""
        ckpt = osp.join(run.work_dir, f'epoch_{run.epochs}.pth')
        out = osp.join(run.work_dir, 'final_val.json')
        cmd = [sys.executable, osp.join(REPO, 'tools', 'test.py'), run.config,
               ckpt, '--work-dir', osp.join(run.work_dir, 'test'), '--out',
               out, '--cfg-options'] + self.run_options(run, teacher)
        log_path = osp.join(run.work_dir, 'test.log')
        self._wait(self._spawn(cmd, log_path), f'testing {run.name}',
                   log_path)

    def ensure_teacher(self) -> str:
        """The teacher checkpoint: given, already trained here, or trained
        now with the demo teacher config."""
        if self.teacher:
            if not osp.isfile(self.teacher):
                raise FileNotFoundError(f'teacher {self.teacher} not found')
            return self.teacher
        ckpt = self.teacher_path()
        work = osp.dirname(ckpt)
        epochs = int(osp.basename(ckpt)[len('epoch_'):-len('.pth')])
        if is_complete(ckpt):
            return ckpt
        opts = [f'train_dataloader.dataset.data_root={self.data_root}',
                f'val_dataloader.dataset.data_root={self.data_root}',
                f'test_dataloader.dataset.data_root={self.data_root}',
                f'train_dataloader.num_workers={self.num_workers}',
                f'val_dataloader.num_workers={self.num_workers}']
        if self.teacher_epochs:
            opts += schedule_options(epochs)
        cmd = [sys.executable, osp.join(REPO, 'tools', 'train.py'),
               self.teacher_config, '--work-dir', work, '--resume',
               '--cfg-options'] + opts
        print(f'[ablation] training the teacher in {work}', flush=True)
        log_path = osp.join(work, 'train.log')
        self._wait(self._spawn(cmd, log_path), 'teacher training', log_path)
        return ckpt

    def ensure_stored_targets(self, config: str, teacher: str) -> str:
        """The fix/ic_ens targets (tools/precompute_teacher.py; resumable,
        skipped when the file is there)."""
        if osp.isfile(self.ens_file):
            return self.ens_file
        cfg = self._config(config)
        chain = dataset_chain(cfg.train_dataloader.dataset)
        inner = 'train_dataloader' + '.dataset' * len(chain)
        cmd = [sys.executable, osp.join(REPO, 'tools',
                                        'precompute_teacher.py'), config,
               self.ens_file, '--device', 'cpu']
        if self.ens_crops:
            cmd += ['--num-crops', str(self.ens_crops)]
        cmd += ['--cfg-options', f'model.teachers.0.checkpoint={teacher}',
                f'{inner}.data_root={self.data_root}']
        log_path = self.ens_file + '.log'
        self._wait(self._spawn(cmd, log_path), 'fix/ic_ens precompute',
                   log_path)
        return self.ens_file

    # -- the study ------------------------------------------------------------
    def run(self, dry_run: bool = False) -> dict:
        """Run what is missing, then write the CSV, figures and markdown.

        Returns:
            dict: ``rows`` (one per finished run), ``executed`` (names of the
            runs trained by this call), ``failed`` and output ``paths``.
        """
        from tqdm import tqdm

        from projects.funmatch_paper.digits import write_digits, write_fewshot
        os.makedirs(self.work_dir, exist_ok=True)
        write_digits(self.data_root)
        for per_class in self.fewshot_sizes():
            write_fewshot(self.data_root, per_class)
        runs = self.plan()
        teacher = self.teacher_path()
        todo = []
        for r in runs:
            if load_result(r, teacher) is not None:
                continue
            if run_finished(r):  # trained, but the driver stopped before
                write_result(r, teacher, self.data_root, None)  # recording
                continue
            todo.append(r)
        est = self.estimate_s(todo)
        n_settings = len(set(r.setting for r in runs))
        print(f'[ablation] {len(runs)} runs ({n_settings}'
              f' settings x {len(self.seeds)} seeds x epochs {self.epochs}); '
              f'{len(todo)} to run, {sum(r.iters for r in todo)} iterations, '
              f'about {est / 60:.0f} min on {self.jobs} idle cores.',
              flush=True)
        if dry_run:
            return dict(rows=[], executed=[], failed=[], paths={},
                        planned=[r.name for r in todo])

        teacher = self.ensure_teacher()
        executed, failed = [], []
        lock = threading.Lock()
        slots = list(range(1, self.jobs + 1))
        study_bar = tqdm(total=sum(r.iters - current_iter(r.work_dir)
                                   for r in todo),
                         desc=f'{self.prefix} study', unit='it', position=0,
                         dynamic_ncols=True)
        ens: Optional[Future] = None
        with ThreadPoolExecutor(self.jobs) as pool:
            stored = [r for r in todo if r.stored_teacher]
            if stored:
                ens = pool.submit(self.ensure_stored_targets,
                                  stored[0].config, teacher)

            def work(run: Run) -> None:
                try:
                    if run.stored_teacher:
                        ens.result()  # raises if the precompute failed
                except Exception as err:
                    failed.append(f'{run.name}: {err}')
                    return
                with lock:
                    slot = slots.pop(0)
                bar = tqdm(total=run.iters, desc=run.name, unit='it',
                           position=slot, leave=False, dynamic_ncols=True)
                try:
                    wall = self.train_run(run, teacher, bar, study_bar)
                    write_result(run, teacher, self.data_root, wall)
                    executed.append(run.name)
                except Exception as err:  # keep the other runs going
                    failed.append(f'{run.name}: {err}')
                    tqdm.write(f'[ablation] FAILED {run.name}: {err}')
                finally:
                    bar.close()
                    with lock:
                        slots.append(slot)
                        slots.sort()

            for future in [pool.submit(work, r) for r in todo]:
                future.result()
        study_bar.close()

        rows = []
        for r in runs:
            result = load_result(r, teacher)
            if result is not None:
                rows.append(result['row'])
        paths = self.write_outputs(rows, runs, teacher)
        if failed:
            print('[ablation] failed runs:\n  ' + '\n  '.join(failed))
        return dict(rows=rows, executed=executed, failed=failed, paths=paths)

    # -- outputs --------------------------------------------------------------
    def write_outputs(self, rows: List[dict], runs: Sequence[Run],
                      teacher: str) -> Dict[str, str]:
        """The CSV of every run, the two figures and the markdown table."""
        paths = dict(
            csv=osp.join(self.work_dir, f'{self.prefix}_runs.csv'),
            val_png=osp.join(self.work_dir, f'{self.prefix}_val_top1.png'),
            loss_png=osp.join(self.work_dir,
                              f'{self.prefix}_train_loss.png'),
            kl_png=osp.join(self.work_dir, f'{self.prefix}_val_kl.png'),
            markdown=self.md_path or osp.join(self.work_dir,
                                              f'{self.prefix}.md'))
        write_csv(rows, paths['csv'])
        curves = {r.name: read_curves(r.work_dir, r.iters_per_epoch)
                  for r in runs if any(x['work_dir'] == r.work_dir
                                       for x in rows)}
        order = list(self.names)
        teacher_top1 = teacher_accuracy(teacher)
        plot_study(rows, runs, curves, order, paths['val_png'],
                   paths['loss_png'], teacher_top1, paths['kl_png'])
        acc = ('' if teacher_top1 is None else
               f' (val top-1 {teacher_top1:.1f} %)')
        os.makedirs(osp.dirname(osp.abspath(paths['markdown'])),
                    exist_ok=True)
        with open(paths['markdown'], 'w') as f:
            f.write(markdown_table(rows, order) + '\n\n' +
                    f'Teacher: `{teacher}`{acc}; seeds {self.seeds}; data '
                    f'`{self.data_root}`; CSV: `{paths["csv"]}`.\n')
        return paths


# -- reading runs -------------------------------------------------------------
def is_complete(path: str) -> bool:
    from mmfunmatch.engine.hooks import is_complete_checkpoint
    return is_complete_checkpoint(path)


def read_records(work_dir: str) -> Tuple[List[dict], List[dict]]:
    """Train and val records of every (resumed) session of a run, oldest
    first; a later session's record replaces an earlier one of the same
    step."""
    train: Dict[int, dict] = {}
    val: Dict[int, dict] = {}
    for path in sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill
                    continue
                if 'accuracy/top1' in rec:
                    val[rec['step']] = rec
                elif 'loss' in rec:
                    train[rec['step']] = rec
    return ([train[k] for k in sorted(train)], [val[k] for k in sorted(val)])


def teacher_accuracy(checkpoint: str) -> Optional[float]:
    """The teacher's last val top-1, when its training logs sit next to
    its checkpoint (a teacher trained with tools/train.py)."""
    _, val = read_records(osp.dirname(osp.abspath(checkpoint)))
    return float(val[-1]['accuracy/top1']) if val else None


def current_iter(work_dir: str) -> int:
    """The last logged training iteration of a run (0 before any)."""
    train, _ = read_records(work_dir)
    return int(train[-1]['step']) if train else 0


def has_final_val(work_dir: str, epochs: int) -> bool:
    _, val = read_records(work_dir)
    return (any(r['step'] == epochs for r in val)
            or osp.isfile(osp.join(work_dir, 'final_val.json')))


def run_finished(run: Run) -> bool:
    """A complete final checkpoint and a validation of it."""
    return (is_complete(osp.join(run.work_dir, f'epoch_{run.epochs}.pth'))
            and has_final_val(run.work_dir, run.epochs))


def summarise(run: Run, wall_s: Optional[float] = None) -> dict:
    """The CSV row of a finished run."""
    train, val = read_records(run.work_dir)
    final = [r for r in val if r['step'] == run.epochs]
    if final:
        metrics = final[-1]
    else:
        with open(osp.join(run.work_dir, 'final_val.json')) as f:
            metrics = json.load(f)
    loss = [r.get('loss_distill', r.get('loss')) for r in train]
    return dict(
        setting=run.setting, seed=run.seed, epochs=run.epochs,
        val_top1=float(metrics['accuracy/top1']),
        agreement=float(metrics.get('teacher/agreement', float('nan'))),
        # mmengine logs the mean over its window (10 iterations).
        train_distill_loss=float(loss[-1]) if loss else float('nan'),
        val_kl=float(metrics.get('teacher/kl', float('nan'))),
        iters=run.iters,
        wall_s=float('nan') if wall_s is None else round(wall_s, 1),
        work_dir=run.work_dir)


def _spec(run: Run, teacher: str, data_root: str) -> dict:
    return dict(config=run.config, teacher=osp.abspath(teacher),
                data_root=data_root, epochs=run.epochs, seed=run.seed,
                iters=run.iters)


def write_result(run: Run, teacher: str, data_root: str,
                 wall_s: Optional[float]) -> dict:
    """Record a finished run (what it was trained with, and its row)."""
    if not run_finished(run):
        raise RuntimeError(f'{run.name}: training ended without a complete '
                           f'final checkpoint and validation')
    result = dict(spec=_spec(run, teacher, data_root),
                  row=summarise(run, wall_s))
    tmp = osp.join(run.work_dir, RESULT_FILE + '.tmp')
    with open(tmp, 'w') as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, osp.join(run.work_dir, RESULT_FILE))
    return result


def load_result(run: Run, teacher: str) -> Optional[dict]:
    """The recorded result of a finished run, or None when it must run.

    A run trained with another teacher or schedule in the same folder is an
    error rather than a silent mix.
    """
    path = osp.join(run.work_dir, RESULT_FILE)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        result = json.load(f)
    spec = result['spec']
    if (spec['teacher'] != osp.abspath(teacher)
            or spec['iters'] != run.iters):
        raise RuntimeError(
            f'{run.work_dir} holds a run with teacher {spec["teacher"]} and '
            f'{spec["iters"]} iterations, not {teacher} and {run.iters}; use '
            f'another --work-dir')
    if not run_finished(run):
        return None
    return result


def read_curves(work_dir: str, iters_per_epoch: int) -> dict:
    """Val top-1 and KL(teacher || student) per epoch, and the train
    distillation loss per epoch."""
    train, val = read_records(work_dir)
    return dict(
        val_epoch=[r['step'] for r in val],
        val_top1=[r['accuracy/top1'] for r in val],
        val_kl=[r.get('teacher/kl', float('nan')) for r in val],
        train_epoch=[r['step'] / iters_per_epoch for r in train],
        train_loss=[r.get('loss_distill', r.get('loss')) for r in train])


# -- tables and figures -------------------------------------------------------
def write_csv(rows: Sequence[dict], path: str,
              fields: Sequence[str] = CSV_FIELDS) -> None:
    """``rows`` as CSV with the columns ``fields``."""
    with open(path, 'w', newline='') as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in fields})


def aggregate(rows: List[dict], key: str) -> Dict[Tuple[str, int],
                                                  Tuple[float, float, int]]:
    """(setting, epochs) -> (mean, std over seeds, number of seeds)."""
    groups: Dict[Tuple[str, int], List[float]] = {}
    for r in rows:
        groups.setdefault((r['setting'], r['epochs']), []).append(r[key])
    return {k: (float(np.mean(v)),
                float(np.std(v, ddof=1)) if len(v) > 1 else float('nan'),
                len(v)) for k, v in groups.items()}


def _fmt(stat: Optional[Tuple[float, float, int]], digits: int) -> str:
    if stat is None:
        return '-'
    mean, std, n = stat
    if n > 1:
        return f'{mean:.{digits}f} +- {std:.{digits}f}'
    return f'{mean:.{digits}f}'


def markdown_table(rows: List[dict], order: Sequence[str]) -> str:
    """Mean +- std over seeds per setting and schedule length: val top-1,
    top-1 agreement and KL(teacher || student) on val, and the final train
    distillation loss (mmengine's mean over its last logging window)."""
    epochs = sorted({r['epochs'] for r in rows})
    top1 = aggregate(rows, 'val_top1')
    agree = aggregate(rows, 'agreement')
    loss = aggregate(rows, 'train_distill_loss')
    kl = aggregate(rows, 'val_kl')
    seeds = {k: v[2] for k, v in top1.items()}
    if not rows:
        return 'No finished runs yet.'
    header = ['setting']
    for e in epochs:
        header += [f'top-1 (%) {e} ep', f'agreement (%) {e} ep',
                   f'val KL to teacher {e} ep', f'train distill loss {e} ep']
    lines = ['| ' + ' | '.join(header) + ' |',
             '| ' + ' | '.join(['---'] * len(header)) + ' |']
    for s in order:
        if not any(r['setting'] == s for r in rows):
            continue
        cells = [s]
        for e in epochs:
            cells += [_fmt(top1.get((s, e)), 1), _fmt(agree.get((s, e)), 1),
                      _fmt(kl.get((s, e)), 3), _fmt(loss.get((s, e)), 3)]
        lines.append('| ' + ' | '.join(cells) + ' |')
    counts = sorted(set(seeds.values()))
    note = (f'Mean +- sample std over {counts[0]} seeds per cell.'
            if len(counts) == 1 else
            f'Mean +- sample std over {counts} seeds (cells differ).')
    if counts == [1]:
        note = 'One seed per cell (no spread).'
    return '\n'.join(lines) + '\n\n' + note


def _style(setting: str, i: int) -> dict:
    import matplotlib.pyplot as plt
    color = plt.get_cmap('tab10')(i % 10)
    # The figure's baselines: fixed teacher dotted, independent views
    # dashed; consistent views (and settings outside the figure) solid.
    return dict(color=color, lw=2.5 if setting == 'funmatch' else 1.5,
                ls=':' if setting.startswith('fix') else
                ('--' if setting.startswith('ind') else '-'))


def plot_study(rows: List[dict], runs: Sequence[Run], curves: Dict[str, dict],
               order: Sequence[str], val_path: str, loss_path: str,
               teacher_top1: Optional[float] = None,
               kl_path: Optional[str] = None) -> None:
    """Two figures (three with ``kl_path``: val KL to the teacher), each: the
    final value against schedule length (mean and std over seeds) and the
    curve during the longest runs (mean over seeds)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    settings = [s for s in order if any(r['setting'] == s for r in rows)]
    longest = max((r['epochs'] for r in rows), default=None)
    figures = [
        (val_path, 'val_top1', 'val top-1 (%)', 'val_epoch', 'val_top1'),
        (loss_path, 'train_distill_loss', 'train distillation loss',
         'train_epoch', 'train_loss')]
    if kl_path:
        figures.append((kl_path, 'val_kl', 'val KL(teacher || student)',
                        'val_epoch', 'val_kl'))
    for path, key, ylabel, curve_x, curve_y in figures:
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
        stats = aggregate(rows, key)
        for i, s in enumerate(settings):
            style = _style(s, i)
            es = sorted(e for (name, e) in stats if name == s)
            mean = np.array([stats[(s, e)][0] for e in es])
            std = np.nan_to_num(np.array([stats[(s, e)][1] for e in es]))
            axes[0].errorbar(es, mean, yerr=std, marker='o', capsize=3,
                             label=s, **style)
            # During the longest runs: mean over seeds on the common epochs.
            seeds = [curves[r.name] for r in runs
                     if r.setting == s and r.epochs == longest
                     and r.name in curves and curves[r.name][curve_x]]
            if seeds:
                n = min(len(c[curve_x]) for c in seeds)
                x = seeds[0][curve_x][:n]
                y = np.mean([c[curve_y][:n] for c in seeds], axis=0)
                axes[1].plot(x, y, label=s, **style)
        if key == 'val_top1' and teacher_top1 is not None:
            for ax in axes:
                ax.axhline(teacher_top1, color='k', ls='--', lw=1,
                           label='teacher')
        lengths = sorted({r['epochs'] for r in rows})
        if len(lengths) > 1:
            axes[0].set_xscale('log')
            axes[0].set_xticks(lengths, [str(e) for e in lengths])
            axes[0].minorticks_off()
        axes[0].set(xlabel='schedule length (epochs)', ylabel=ylabel,
                    title=f'final {ylabel} (mean +- std over seeds)')
        axes[1].set(xlabel='epoch', ylabel=ylabel,
                    title=f'during the {longest}-epoch runs (mean over '
                    f'seeds)')
        for ax in axes:
            ax.grid(alpha=0.3)
        if settings:
            axes[1].legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


# -- the command line (tools/ablation_study.py) ------------------------------
def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Run the paper\'s figure-3 ablation on the digits demo.')
    parser.add_argument('--work-dir', default='work_dirs/ablation')
    parser.add_argument('--data-root', default='data/digits')
    parser.add_argument(
        '--settings', nargs='+', default=list(SETTINGS),
        help='setting names (fix/rs ... funmatch, label) or config paths '
        '(default: the figure\'s eight)')
    parser.add_argument(
        '--config-dir', default=ABLATION_CONFIGS,
        help='where setting names find their digits_<setting>.py (default '
        'configs/funmatch/ablation; configs/funmatch/fewshot for the harder '
        'split)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--epochs', type=int, nargs='+', default=[30, 150],
                        help='schedule lengths (default 30 150)')
    parser.add_argument('--teacher', help='teacher checkpoint to reuse (e.g. '
                        'work_dirs/demo/teacher/epoch_20.pth); trained with '
                        'the demo teacher config when omitted')
    parser.add_argument('--teacher-epochs', type=int,
                        help='shorten the teacher\'s schedule')
    parser.add_argument('--teacher-config',
                        help='config to train the teacher with when '
                        '--teacher is omitted (default: the demo teacher; '
                        'CONFIG_DIR/digits_teacher.py when there is one)')
    parser.add_argument('--jobs', type=int, default=2,
                        help='runs in parallel (default 2)')
    parser.add_argument('--threads', type=int,
                        help='torch threads per run (default cores / jobs)')
    parser.add_argument('--ens-crops', type=int,
                        help='crops per image for fix/ic_ens (default: the '
                        'config\'s, 1024 as in the paper)')
    parser.add_argument('--val-points', type=int, default=5,
                        help='validations per run (default 5)')
    parser.add_argument('--num-workers', type=int, default=1)
    parser.add_argument('--seed-major', action='store_true',
                        help='every length of a seed before the next seed '
                        '(a study stopped early has whole seeds)')
    parser.add_argument('--md', help='markdown table path (default '
                        'WORK_DIR/ablation.md)')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the plan and time estimate, run nothing')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value settings added to every student run')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    configs = [s if s.endswith('.py') else config_path(s, args.config_dir)
               for s in args.settings]
    missing = [c for c in configs if not osp.isfile(c)]
    if missing:
        print(f'[ablation] no config {missing}: give setting names that have '
              f'a digits_<setting>.py in --config-dir {args.config_dir}, or '
              f'config paths', file=sys.stderr)
        return 2
    teacher_config = args.teacher_config
    own = osp.join(args.config_dir, 'digits_teacher.py')
    if teacher_config is None and osp.isfile(own):
        teacher_config = own
    study = Study(args.work_dir, args.data_root, configs, seeds=args.seeds,
                  epochs=args.epochs, teacher=args.teacher,
                  teacher_epochs=args.teacher_epochs, jobs=args.jobs,
                  threads=args.threads, ens_crops=args.ens_crops,
                  val_points=args.val_points, num_workers=args.num_workers,
                  cfg_options=args.cfg_options, md_path=args.md,
                  teacher_config=teacher_config, seed_major=args.seed_major)
    start = time.time()
    result = study.run(dry_run=args.dry_run)
    if args.dry_run:
        for name in result['planned']:
            print(f'  {name}')
        return 0
    print(f'[ablation] trained {len(result["executed"])} runs in '
          f'{(time.time() - start) / 60:.1f} min; '
          f'{len(result["rows"])} finished runs in the table.')
    for key, path in result['paths'].items():
        print(f'  {key}: {path}')
    return 1 if result['failed'] else 0
