"""Every workaround mmfunmatch needs on its pinned stack, in one place.

Pinned: torch 2.14.1, mmengine 0.10.7, mmcv-lite 2.1.0, mmpretrain 1.2.0,
mmrazor 1.0.0. :func:`apply` runs once, on ``import mmfunmatch``. Each patch
says why it exists and when it can go.
"""
import functools
import os
import os.path as osp
import pickle
import sys
import types

import torch

_APPLIED = False


def _stub_mmrazor_quantization() -> None:
    """Let ``import mmrazor.models`` work on torch 2.x.

    mmrazor 1.0.0's ``mmrazor.structures.quantization`` imports torch.ao
    internals that were renamed in torch 2.x, and ``mmrazor.models`` imports it
    unconditionally, so nothing in mmrazor (distillers included) imports. We
    register a stand-in module before mmrazor loads. Distillation works;
    mmrazor's quantization does not (documented in the README).
    Remove when mmrazor publishes a release that imports on torch 2.x.
    """
    name = 'mmrazor.structures.quantization'
    if name in sys.modules:
        return

    class QConfigHandler:  # noqa: D401 - placeholder with a clear failure

        def __init__(self, *args, **kwargs):
            raise RuntimeError(
                'mmrazor quantization is unavailable with mmfunmatch on '
                'torch 2.x (mmrazor 1.0.0 targets torch 1.x internals). '
                'Distillation works; for quantization use torch.ao directly.')

    stub = types.ModuleType(name)
    stub.__path__ = []  # a package, so submodule imports fail cleanly
    stub.BackendConfigs = dict(
        academic=None, native=None, tensorrt=None, openvino=None)
    stub.QConfigHandler = QConfigHandler
    sys.modules[name] = stub


# Types that mmengine puts into its own checkpoints besides tensors: the
# message hub's HistoryBuffer with numpy arrays and scalars.
def _checkpoint_safe_globals() -> list:
    import numpy as np
    from mmengine.logging import HistoryBuffer
    safe = [HistoryBuffer, np.ndarray, np.dtype, np.core.multiarray.scalar,
            np.core.multiarray._reconstruct]
    safe += [type(np.dtype(t)) for t in (
        'float16', 'float32', 'float64', 'int8', 'int16', 'int32', 'int64',
        'uint8', 'bool')]

    # HistoryBuffer pickles its statistics methods as
    # getattr(HistoryBuffer, 'min'); allow exactly those lookups, never a
    # general getattr (which would reach anything).
    def history_buffer_getattr(obj, name):
        if obj is HistoryBuffer and name in ('min', 'max', 'current', 'mean'):
            return getattr(obj, name)
        raise pickle.UnpicklingError(
            f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint')

    safe.append((history_buffer_getattr, 'builtins.getattr'))
    return safe


def load_runner_checkpoint(filename: str, map_location=None):
    """Load a checkpoint written by an mmengine runner without full unpickling.

    torch >= 2.6 defaults to ``weights_only=True`` and mmengine 0.10.7 calls
    ``torch.load`` without the argument, so resuming from mmengine's own
    checkpoints fails on the HistoryBuffer and numpy objects they hold. Rather
    than switch unpickling fully on, we allow exactly those types. Any other
    object in the file is refused with a message saying so.
    """
    if not os.path.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    with torch.serialization.safe_globals(_checkpoint_safe_globals()):
        try:
            return torch.load(filename, map_location=map_location,
                              weights_only=True)
        except pickle.UnpicklingError as err:  # outside the allowlist
            raise RuntimeError(
                f'refusing to load {filename}: it holds objects outside the '
                f'types an mmengine checkpoint needs, so loading it could '
                f'run code ({err}). Re-save its tensors as .safetensors or a '
                f'plain state dict if you trust it.') from err
        except (RuntimeError, EOFError, OSError) as err:  # cut short
            raise RuntimeError(
                f'cannot read {filename}: the file is incomplete or corrupt '
                f'(a write that did not finish?): {err}. To resume, use '
                f'--resume without a path: it picks the newest complete '
                f'checkpoint.') from err


def _register_safe_local_checkpoint_loader() -> None:
    """Make mmengine's local checkpoint loader use :func:`load_runner_checkpoint`.

    Remove when mmengine passes ``weights_only`` with an allowlist itself.
    """
    from mmengine.runner.checkpoint import CheckpointLoader

    @CheckpointLoader.register_scheme(prefixes='', force=True)
    def load_from_local(filename, map_location=None):  # noqa: F811
        filename = os.path.expanduser(filename)
        return load_runner_checkpoint(filename, map_location)


def _cpu_process_group() -> None:
    """Let mmengine's 'pytorch' launcher start a gloo group on a CPU machine.

    mmengine 0.10.7 always calls ``torch.cuda.set_device`` in its pytorch
    launcher and its runner passes ``device_ids=[LOCAL_RANK]`` to DDP, both of
    which fail without a GPU. With CUDA present nothing changes. Remove when
    mmengine supports CPU process groups in its launcher.
    """
    import mmengine.dist.utils as dist_utils
    from mmengine.model import MMDistributedDataParallel

    original_init = dist_utils._init_dist_pytorch

    @functools.wraps(original_init)
    def init_dist_pytorch(backend, init_backend='torch', **kwargs):
        if torch.cuda.is_available():
            return original_init(backend, init_backend=init_backend, **kwargs)
        torch.distributed.init_process_group(backend='gloo', **kwargs)

    dist_utils._init_dist_pytorch = init_dist_pytorch

    ddp_init = MMDistributedDataParallel.__init__

    @functools.wraps(ddp_init)
    def mm_ddp_init(self, module, detect_anomalous_params=False, **kwargs):
        first = next(module.parameters(), None)
        if first is not None and first.device.type == 'cpu':
            kwargs['device_ids'] = None
        ddp_init(self, module=module,
                 detect_anomalous_params=detect_anomalous_params, **kwargs)

    MMDistributedDataParallel.__init__ = mm_ddp_init


def close_process_group() -> None:
    """Destroy the default process group, if one was started."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def end_distributed_process(code: int = 0) -> None:
    """End a process of a multi-process run without interpreter finalization.

    mmengine 0.10.7 never destroys the process group it started, and torch
    2.14 does not either before the interpreter is torn down: gloo's worker
    threads can then release tensors during finalization and abort the
    process after training finished ("terminate called without an active
    exception", SIGABRT, exit -6: about 1 in 7 two-node CPU runs here), so
    torchrun reports a finished run as failed. The group is destroyed, the
    atexit handlers run (logs flushed, dataloader workers ended), and the
    process exits with ``code`` before finalization. A single process (no
    group) is left alone. Remove when torch destroys process groups before
    finalization.
    """
    import atexit
    import os
    import sys
    if not (torch.distributed.is_available()
            and torch.distributed.is_initialized()):
        return
    close_process_group()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def atomic_write_bytes(data: bytes, filepath: str) -> None:
    """Write ``data`` to ``filepath`` so that the path never names a partial
    file: write a temporary file beside it, flush it to disk, rename it.

    A process killed at any point leaves either the old file (or none) or the
    complete new one, plus at worst a ``<name>.tmp-<pid>`` file that
    :class:`~mmfunmatch.engine.hooks.SafeCheckpointHook` removes at the next
    start.
    """
    filepath = os.fspath(filepath)
    directory = osp.dirname(osp.abspath(filepath))
    os.makedirs(directory, exist_ok=True)
    tmp = f'{filepath}.tmp-{os.getpid()}'
    try:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filepath)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable (POSIX); best effort elsewhere
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def _atomic_local_put() -> None:
    """Make mmengine's local file writes (checkpoints included) atomic.

    mmengine 0.10.7's ``save_checkpoint`` serialises to memory and then
    ``LocalBackend.put`` opens the final path with 'wb' and writes in place:
    a run killed during the write (pre-emption, OOM killer, node loss)
    leaves a truncated ``epoch_N.pth`` under the name ``--resume`` looks
    for. We route ``put`` through :func:`atomic_write_bytes`. Remove when
    mmengine writes through a temporary file itself.
    """
    from mmengine.fileio.backends import LocalBackend

    def put(self, obj: bytes, filepath) -> None:
        atomic_write_bytes(obj, filepath)

    put.__doc__ = LocalBackend.put.__doc__
    LocalBackend.put = put


def _cpu_sync_batchnorm() -> None:
    """Let ``sync_bn='torch'`` work on a CPU (gloo) process group.

    torch 2.14's ``SyncBatchNorm`` raises 'SyncBatchNorm expected input
    tensor to be on GPU' for CPU tensors, so mmengine's ``sync_bn`` option
    fails on CPU multi-process runs. After mmengine converts the model, CPU
    modules get a subclass that all-reduces the batch statistics with
    ``torch.distributed.nn``'s autograd-aware all_reduce (two passes: mean,
    then centred variance); on GPU nothing changes. It is not a
    ``SyncBatchNorm`` subclass because DDP also refuses those on CPU
    ('SyncBatchNorm layers only work with GPU modules'). Remove when torch's
    SyncBatchNorm accepts CPU tensors.
    """
    import torch.distributed as dist
    import torch.nn as nn
    from torch.nn.modules.batchnorm import _BatchNorm
    import mmengine.runner.runner as runner_module

    class CPUSyncBatchNorm(_BatchNorm):
        """BatchNorm whose training statistics span every rank (CPU)."""

        process_group = None

        def _check_input_dim(self, input: torch.Tensor) -> None:
            if input.dim() < 2:
                raise ValueError(
                    f'expected at least 2D input (got {input.dim()}D input)')

        def forward(self, input: torch.Tensor) -> torch.Tensor:
            group = self.process_group or dist.group.WORLD
            if (not self.training or not dist.is_initialized()
                    or dist.get_world_size(group) < 2):
                return super().forward(input)
            from torch.distributed.nn.functional import all_reduce
            self._check_input_dim(input)
            factor = 0.0 if self.momentum is None else self.momentum
            if (self.track_running_stats
                    and self.num_batches_tracked is not None):
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    factor = 1.0 / float(self.num_batches_tracked)
            dims = [0] + list(range(2, input.dim()))
            shape = [1, -1] + [1] * (input.dim() - 2)
            count = torch.tensor([input.numel() // input.size(1)],
                                 dtype=input.dtype)
            summed = all_reduce(torch.cat([input.sum(dims), count]),
                                group=group)
            n = summed[-1]
            mean = summed[:-1] / n
            centred = input - mean.view(shape)
            var = all_reduce((centred * centred).sum(dims), group=group) / n
            if self.track_running_stats:
                with torch.no_grad():
                    self.running_mean.mul_(1 - factor).add_(factor * mean)
                    self.running_var.mul_(1 - factor).add_(
                        factor * var * n / (n - 1))
            out = centred * torch.rsqrt(var.view(shape) + self.eps)
            if self.affine:
                out = out * self.weight.view(shape) + self.bias.view(shape)
            return out

    original = runner_module.convert_sync_batchnorm

    @functools.wraps(original)
    def convert_sync_batchnorm(module, implementation='torch'):
        module = original(module, implementation)
        for m in module.modules():
            if type(m) is nn.SyncBatchNorm and not torch.cuda.is_available():
                m.__class__ = CPUSyncBatchNorm
        return module

    runner_module.convert_sync_batchnorm = convert_sync_batchnorm


def _mmcls_scope_alias() -> None:
    """Let MMRazor 1.0.0's own configs, written for MMClassification 1.x
    ('mmcls'), load and build with MMPretrain, its renamed successor.

    MMRazor's classification configs inherit ``mmcls::_base_/...`` files and
    name ``mmcls.ImageClassifier``, ``mmcls.ResNet_CIFAR`` and so on; mmcls
    1.x was renamed mmpretrain (which pins out mmcls: both cannot be
    installed), so ``Config.fromfile`` stops with 'mmcls is not installed'
    and the registries know no 'mmcls' scope. The config path ``mmcls::X``
    is read as ``mmpretrain::X`` (mmpretrain ships the same ``_base_``
    files), and each root registry lists mmpretrain's registry a second
    time under the key 'mmcls', so ``mmcls.Name`` finds mmpretrain's
    ``Name``. Nothing changes where mmcls itself is installed. Remove when
    MMRazor's configs name mmpretrain.
    """
    from mmengine.config import Config
    from mmengine.utils import is_installed
    if is_installed('mmcls'):
        return
    original = Config._get_cfg_path

    def get_cfg_path(cfg_path, filename):
        if cfg_path.startswith('mmcls::'):
            cfg_path = 'mmpretrain::' + cfg_path[len('mmcls::'):]
        return original(cfg_path, filename)

    Config._get_cfg_path = staticmethod(get_cfg_path)

    import mmengine.registry as roots
    import mmpretrain.registry as pretrain
    for name in dir(pretrain):
        registry = getattr(pretrain, name)
        if (isinstance(registry, roots.Registry)
                and registry.scope == 'mmpretrain'
                and registry.parent is not None):
            registry.parent._children.setdefault('mmcls', registry)


def apply() -> None:
    """Apply every workaround once."""
    global _APPLIED
    if _APPLIED:
        return
    _stub_mmrazor_quantization()
    _register_safe_local_checkpoint_loader()
    _cpu_process_group()
    _atomic_local_put()
    _cpu_sync_batchnorm()
    _mmcls_scope_alias()
    _APPLIED = True
