"""Small helpers with one home each (they were written several times)."""
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F


def output_logits(out) -> torch.Tensor:
    """The logits of a model's 'tensor' output: a tensor, or a tuple/list
    ending in the logits (mmpretrain heads may return their pre-logits
    first)."""
    return out[-1] if isinstance(out, (tuple, list)) else out


def to_hw(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """(height, width) from an int or an (h, w) pair."""
    if isinstance(size, int):
        return size, size
    if len(size) != 2:
        raise ValueError(f'a size is an int or (h, w), got {size!r}')
    return int(size[0]), int(size[1])


def dataset_chain(dataset: dict) -> List[dict]:
    """A data set config and every data set it wraps (RepeatDataset,
    StoredTeacherDataset, ...), outermost first; ``[-1]`` is the one that
    reads the files."""
    chain = [dataset]
    while isinstance(chain[-1], dict) and 'dataset' in chain[-1]:
        chain.append(chain[-1]['dataset'])
    return chain


def one_hot_labels(data_samples, num_classes: int) -> Optional[torch.Tensor]:
    """One-hot scores of the samples' labels; None when a sample has no
    label (or an ignored, negative one)."""
    if not data_samples or not all('gt_label' in s for s in data_samples):
        return None
    labels = torch.cat([s.gt_label for s in data_samples])
    if (labels < 0).any():
        return None
    return F.one_hot(labels, num_classes).float()
