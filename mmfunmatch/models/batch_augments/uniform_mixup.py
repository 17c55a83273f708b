from typing import List, Optional, Sequence, Tuple, Union

import torch
from mmpretrain.registry import BATCH_AUGMENTS

Views = Union[torch.Tensor, Sequence[torch.Tensor]]


@BATCH_AUGMENTS.register_module()
class UniformMixup:
    """Mixup with a uniform weight, one draw shared by every view of a batch.

    Function matching mixes the student's input and every teacher's input
    with the same weight and the same partner, so the teacher always labels
    exactly the image the student sees. The weight is drawn from U(0, 1)
    (Beta(1, 1)) and by default folded to ``max(lam, 1 - lam)`` in [0.5, 1];
    the partner of sample i is sample i - 1 (the batch rolled by one, which,
    unlike reversing, never pairs two samples with each other twice).

    It can be used alone in mmpretrain's ``ClsDataPreprocessor`` (one tensor
    and one-hot scores) or by ``FunMatchDataPreprocessor`` with several views.
    Samples need no labels: ``batch_score`` may be None.

    Args:
        fold (bool): Fold the weight to [0.5, 1]. Defaults to True.
        per_sample (bool): One weight per sample instead of per batch.
            Defaults to False.
        seed (int, optional): Seed of the augment's own random generator.
            Inside ``FunMatchDataPreprocessor`` its state is part of the
            model's state dict, so checkpoints carry it. Defaults to None
            (seeded from torch's RNG).
    """

    def __init__(self,
                 fold: bool = True,
                 per_sample: bool = False,
                 seed: Optional[int] = None) -> None:
        self.fold = fold
        self.per_sample = per_sample
        self.generator = torch.Generator()
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1, )).item())
        self.generator.manual_seed(seed)
        self.last_lam: Optional[torch.Tensor] = None

    def sample_lam(self, batch_size: int) -> torch.Tensor:
        """Draw the mixing weight(s): shape (1,) or (batch_size,)."""
        n = batch_size if self.per_sample else 1
        lam = torch.rand(n, generator=self.generator)
        if self.fold:
            lam = torch.maximum(lam, 1 - lam)
        return lam

    def __call__(self,
                 batch_inputs: Views,
                 batch_score: Optional[torch.Tensor] = None
                 ) -> Tuple[Views, Optional[torch.Tensor]]:
        """Mix every view (and the scores, if given) with one draw.

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
        lam = self.sample_lam(n)
        self.last_lam = lam

        def mix(x: torch.Tensor) -> torch.Tensor:
            w = lam.to(device=x.device, dtype=x.dtype)
            w = w.view(-1, *([1] * (x.dim() - 1)))
            return w * x + (1 - w) * x.roll(1, dims=0)

        mixed = [mix(v) for v in views]
        score = None if batch_score is None else mix(batch_score.float())
        out = mixed[0] if isinstance(batch_inputs, torch.Tensor) else mixed
        return out, score

    def get_rng_state(self) -> torch.Tensor:
        """The generator state (a uint8 tensor), for exact resume."""
        return self.generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        """Restore a state returned by :meth:`get_rng_state`."""
        self.generator.set_state(state)
