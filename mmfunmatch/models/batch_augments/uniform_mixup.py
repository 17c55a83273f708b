from typing import List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmengine.logging import print_log
from mmpretrain.registry import BATCH_AUGMENTS

Views = Union[torch.Tensor, Sequence[torch.Tensor]]

# Entropy tag of the mixup weights, apart from ExactResumeHook's streams.
_MIX_STREAM = 3


def _uniform(seed: int, step: int, first: int, count: int) -> torch.Tensor:
    """``count`` U[0, 1) float32 numbers, the ``first``-th to
    ``first + count - 1``-th of the stream of (seed, step).

    A counter-based stream (numpy's SeedSequence hashes an index per word):
    number k is the same however many numbers are asked for, so a rank that
    holds positions 16 to 31 of a step's global batch draws what a single
    process draws for them.
    """
    words = np.random.SeedSequence(
        [int(seed), _MIX_STREAM, int(step)]).generate_state(first + count)
    # 24 random bits, like torch.rand's float32.
    return torch.from_numpy(
        (words[first:] >> 8).astype(np.float32) * np.float32(2.0**-24))


@BATCH_AUGMENTS.register_module()
class UniformMixup:
    """Mixup with a uniform weight, one draw shared by every view of a batch.

    Function matching mixes the student's input and every teacher's input
    with the same weight and the same partner, so the teacher always labels
    exactly the image the student sees. The weight is uniform on [0, 1)
    (Beta(1, 1)) and by default folded to ``max(lam, 1 - lam)`` in
    [0.5, 1]; the partner of a sample is the previous sample of its group
    (the group rolled by one, which, unlike reversing, never pairs two
    samples with each other twice).

    **Groups.** The paper (and big_vision) pairs within each device's batch:
    with ``group_size=None`` a group is the batch this process mixes. With
    ``group_size=k`` the step's global batch is cut into consecutive groups
    of ``k`` samples, which never straddle processes (``k`` must divide the
    per-process batch); then the pairs do not depend on how many processes
    share the global batch, and a run may resume on another number of
    processes with the same draws (with ``ExactResumeHook``, which lays the
    global batch out in contiguous per-rank blocks). Set ``k`` to the
    smallest per-process batch the run may use.

    **Weights** are a function of (``seed``, step) (big_vision's default:
    one coefficient for the whole global batch) or, with ``per_sample``, of
    (``seed``, step, position of the sample in the step's global batch);
    never of how many numbers some generator drew before. The step and the
    position of this process's first sample are set by ``ExactResumeHook``
    before every iteration (:meth:`set_position`); without it the augment
    counts its own calls, so each call gets a fresh weight and position 0.
    The (seed, step) pair is the augment's state: inside
    ``FunMatchDataPreprocessor`` it is part of the model's state dict, so
    checkpoints carry it.

    It can be used alone in mmpretrain's ``ClsDataPreprocessor`` (one tensor
    and one-hot scores) or by ``FunMatchDataPreprocessor`` with several views.
    Samples need no labels: ``batch_score`` may be None.

    Args:
        fold (bool): Fold the weight to [0.5, 1]. Defaults to True.
        per_sample (bool): One weight per sample instead of per batch.
            Defaults to False.
        seed (int, optional): Seed of the weights. Defaults to None (drawn
            from torch's generator, which the runner seeds, and saved in
            checkpoints).
        group_size (int, optional): Pair within consecutive groups of this
            many samples of the global batch instead of within each
            process's batch. Defaults to None (the process's batch).
    """

    def __init__(self,
                 fold: bool = True,
                 per_sample: bool = False,
                 seed: Optional[int] = None,
                 group_size: Optional[int] = None) -> None:
        if group_size is not None and (isinstance(group_size, bool)
                                       or not isinstance(group_size, int)
                                       or group_size < 2):
            raise ValueError(
                f'UniformMixup: group_size must be an int of at least 2 (a '
                f'sample cannot be mixed with itself) or None (pair within '
                f'each process batch); got {group_size!r}.')
        self.fold = fold
        self.per_sample = per_sample
        self.group_size = group_size
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1, )).item())
        self.seed = int(seed)
        self.step = 0    # the training step whose batch is mixed next
        self.offset = 0  # position of this process's first sample
        self.last_lam: Optional[torch.Tensor] = None
        self.last_partner: Optional[torch.Tensor] = None

    def set_position(self, step: int, offset: int = 0) -> None:
        """Mix the next batch as the one of training step ``step``, whose
        first sample sits at position ``offset`` of the step's global batch
        (``rank * per-process batch``)."""
        self.step, self.offset = int(step), int(offset)

    def sample_lam(self, batch_size: int) -> torch.Tensor:
        """The mixing weight(s) of the current position: shape (1,), or
        (batch_size,) with ``per_sample``. Drawing does not advance."""
        if self.per_sample:
            lam = _uniform(self.seed, self.step, self.offset, batch_size)
        else:
            lam = _uniform(self.seed, self.step, 0, 1)
        if self.fold:
            lam = torch.maximum(lam, 1 - lam)
        return lam

    def partners(self, batch_size: int) -> torch.Tensor:
        """Index of each sample's partner in this process's batch: the
        previous sample of its group (the first takes the group's last)."""
        k = batch_size if self.group_size is None else self.group_size
        if batch_size % k or self.offset % k:
            raise ValueError(
                f'UniformMixup: group_size={k} must divide the batch of '
                f'{batch_size} samples this process mixes (and its offset '
                f'{self.offset} in the global batch), or a group would span '
                f'two processes. Set train_dataloader.batch_size (per '
                f'process) to a multiple of {k}, or group_size to a divisor '
                f'of {batch_size}.')
        i = torch.arange(batch_size)
        return i - i % k + (i - 1) % k

    def decide(self,
               batch_size: int,
               step: Optional[int] = None,
               offset: Optional[int] = None
               ) -> Tuple[torch.Tensor, torch.Tensor]:
        """The mixing decision for a batch of ``batch_size`` samples at
        training step ``step`` and global offset ``offset`` (default: the
        current position), without mixing or advancing: the weights ``lam``
        ((1,) or (batch_size,)) and the partner index of every sample
        ((batch_size,) int64). Sample i becomes
        ``lam * x[i] + (1 - lam) * x[partner[i]]``.
        """
        if step is not None or offset is not None:
            saved = self.step, self.offset
            self.set_position(saved[0] if step is None else step,
                              saved[1] if offset is None else offset)
            try:
                return self.decide(batch_size)
            finally:
                self.step, self.offset = saved
        return self.sample_lam(batch_size), self.partners(batch_size)

    def __call__(self,
                 batch_inputs: Views,
                 batch_score: Optional[torch.Tensor] = None
                 ) -> Tuple[Views, Optional[torch.Tensor]]:
        """Mix every view (and the scores, if given) with one draw, then
        move to the next step.

        Args:
            batch_inputs (Tensor | Sequence[Tensor]): One (N, ...) tensor or
                several views of the same N samples.
            batch_score (Tensor, optional): (N, C) one-hot or soft labels.

        Returns:
            The mixed views in the structure they came in, and the mixed
            scores (None when none were given).
        """
        views: List[torch.Tensor] = (
            [batch_inputs] if isinstance(batch_inputs, torch.Tensor) else
            list(batch_inputs))
        n = views[0].size(0)
        if any(v.size(0) != n for v in views):
            raise ValueError('UniformMixup: all views must hold the same '
                             f'samples, got sizes {[v.size(0) for v in views]}')
        if n < 2:
            raise ValueError(
                'UniformMixup needs at least 2 samples per batch (a sample '
                'cannot be mixed with itself); got a batch of 1. Use a larger '
                'batch size or drop_last=True in the train dataloader.')
        lam, partner = self.decide(n)
        self.last_lam, self.last_partner = lam, partner
        self.step += 1

        def mix(x: torch.Tensor) -> torch.Tensor:
            w = lam.to(device=x.device, dtype=x.dtype)
            w = w.view(-1, *([1] * (x.dim() - 1)))
            return w * x + (1 - w) * x[partner.to(x.device)]

        mixed = [mix(v) for v in views]
        score = None if batch_score is None else mix(batch_score.float())
        out = mixed[0] if isinstance(batch_inputs, torch.Tensor) else mixed
        return out, score

    def get_rng_state(self) -> torch.Tensor:
        """The state, (seed, step) as an int64 tensor, for exact resume."""
        return torch.tensor([self.seed, self.step], dtype=torch.int64)

    def set_rng_state(self, state: torch.Tensor) -> None:
        """Restore a state returned by :meth:`get_rng_state`."""
        if state.dtype != torch.int64 or state.numel() != 2:
            # Checkpoints before weights became a function of (seed, step)
            # hold a torch.Generator state (uint8).
            print_log(
                'UniformMixup: the checkpoint holds a mixup generator state '
                'of an older mmfunmatch; mixup weights continue from this '
                "run's seed at the resumed step, not as the interrupted run "
                'would have drawn them.', logger='current', level=30)
            return
        self.seed, self.step = (int(v) for v in state.tolist())
