"""The replay store's format: target precisions against hand computations,
deterministic shard bytes, and the refusals (corrupt, truncated, missing
shards; a fingerprint that differs)."""
import math
import os

import numpy as np
import pytest
import torch

from mmfunmatch.replay.store import (ReplayStore, ReplayStoreError,
                                     bytes_per_view, decode_targets,
                                     encode_targets, fingerprint_diff)

# Half precision rounds to nearest with a 10-bit mantissa: relative error at
# most 2^-11 for normal numbers.
FP16_REL = 2.0**-11


def logits(rows=6, teachers=2, classes=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, teachers, classes, generator=g) * 3


def test_fp32_targets_come_back_bitwise():
    x = logits()
    back = decode_targets(encode_targets(x, 'fp32'), slice(None), 7)
    assert back.dtype == torch.float32 and torch.equal(back, x)


def test_fp16_targets_within_half_rounding():
    x = logits()
    back = decode_targets(encode_targets(x, 'fp16'), slice(1, 4), 7)
    assert back.shape == (3, 2, 7)
    assert ((back - x[1:4]).abs() <= x[1:4].abs() * FP16_REL).all()


def test_topk_keeps_the_top_classes_and_spreads_the_rest_evenly():
    """Logits (2, 1, 0, -1, -3), k = 2, worked out by hand: the two
    largest log-probabilities are kept, the other three classes share the
    remaining probability equally."""
    x = torch.tensor([[[2., 1., 0., -1., -3.]]])
    z = sum(math.exp(v) for v in (2, 1, 0, -1, -3))
    p = [math.exp(v) / z for v in (2, 1, 0, -1, -3)]
    rest = (1 - p[0] - p[1]) / 3
    want = [math.log(p[0]), math.log(p[1])] + [math.log(rest)] * 3
    stored = encode_targets(x, 'topk', topk=2)
    assert stored['topk_index'].dtype == np.int16
    assert stored['topk_index'].tolist() == [[[0, 1]]]
    back = decode_targets(stored, slice(None), 5)[0, 0].tolist()
    for got, exp in zip(back, want):
        assert abs(got - exp) <= abs(exp) * FP16_REL
    # A distribution again (up to the rounding of the stored logs).
    total = sum(math.exp(v) for v in back)
    assert abs(total - 1) <= max(abs(v) for v in want) * FP16_REL * 1.01


def test_topk_is_exact_at_the_top_for_many_classes():
    x = logits(rows=4, teachers=1, classes=1000, seed=1)
    stored = encode_targets(x, 'topk', topk=10)
    back = decode_targets(stored, slice(None), 1000)
    logp = torch.log_softmax(x.double(), -1)
    top = logp.topk(10, -1)
    kept = back.double().gather(-1, top.indices)
    assert ((kept - top.values).abs() <= top.values.abs() * FP16_REL).all()
    assert torch.equal(back.argmax(-1), x.argmax(-1))


def test_bytes_per_view_by_hand():
    # position, sample index, partner: int64; box 4 x int32; flip uint8;
    # weight float32 = 45 bytes; then the target of 1000 classes.
    assert bytes_per_view('fp32', 1000) == 45 + 4000
    assert bytes_per_view('fp16', 1000) == 45 + 2000
    # k int16 indices, k fp16 log-probs, one fp16 log of the rest.
    assert bytes_per_view('topk', 1000, topk=10) == 45 + 20 + 20 + 2
    assert bytes_per_view('fp32', 1000, num_teachers=2) == 45 + 8000


def test_precision_refusals():
    with pytest.raises(ValueError, match='precision must be one of'):
        encode_targets(logits(), 'bf16')
    from mmfunmatch.replay.store import check_precision
    with pytest.raises(ValueError, match='topk = an int from 1'):
        check_precision('topk', 10, num_classes=10)


def shard_arrays():
    return dict(position=np.arange(4, dtype=np.int64),
                weight=np.full(4, 0.75, np.float32),
                **encode_targets(logits(rows=4), 'fp16'))


def test_shards_are_the_same_bytes_each_time_and_read_back(tmp_path):
    a, b = ReplayStore(str(tmp_path / 'a')), ReplayStore(str(tmp_path / 'b'))
    pa = a.write_shard(3, 1, shard_arrays())
    pb = b.write_shard(3, 1, shard_arrays())
    assert os.path.basename(pa) == 'epoch_00003_rank_001.safetensors'
    assert open(pa, 'rb').read() == open(pb, 'rb').read()
    back = a.read_shard(3, 1)
    for k, v in shard_arrays().items():
        assert back[k].dtype == v.dtype and np.array_equal(back[k], v)
    assert not [n for n in os.listdir(tmp_path / 'a') if n.endswith('.tmp')]


@pytest.mark.parametrize('damage', ['flip a byte', 'cut short'])
def test_a_damaged_shard_is_refused_by_name(tmp_path, damage):
    store = ReplayStore(str(tmp_path))
    path = store.write_shard(0, 0, shard_arrays())
    data = bytearray(open(path, 'rb').read())
    if damage == 'flip a byte':
        data[-3] ^= 0x10
    else:
        data = data[:len(data) // 2]
    open(path, 'wb').write(bytes(data))
    with pytest.raises(ReplayStoreError,
                       match='epoch_00000_rank_000.safetensors is corrupt'):
        store.read_shard(0, 0)


def test_missing_store_and_shard_say_how_to_make_them(tmp_path):
    store = ReplayStore(str(tmp_path / 'none'))
    with pytest.raises(ReplayStoreError, match='tools/label_teacher.py'):
        store.manifest
    with pytest.raises(ReplayStoreError, match='shard .* is missing'):
        store.read_shard(2, 0)


def test_fingerprint_names_every_differing_key(tmp_path):
    stored = {'a': [1, 2], 'b': dict(x=1), 'c': 'same'}
    now = {'a': (1, 2), 'b': dict(x=2), 'c': 'same', 'd': 4}
    lines = fingerprint_diff(stored, now)
    assert [line.split(':')[0] for line in lines] == ['b', 'd']
    store = ReplayStore(str(tmp_path))
    store.write_manifest(dict(epochs=1, num_classes=3, teacher_keys=['t'],
                              world_size=1, fingerprint=stored))
    store.check_fingerprint(dict(stored))
    with pytest.raises(ReplayStoreError, match=r'(?s)differ:.*- b: store'):
        ReplayStore(str(tmp_path)).check_fingerprint(now)
