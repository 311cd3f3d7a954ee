"""Transformer building blocks: attention against a reference, masks, caches, sharing."""

import math

import pytest
import torch
from torch import nn

from seqgan.models.transformer import (
    Attention,
    DecoderLayer,
    Embeddings,
    EncoderLayer,
    LayerCache,
    Stack,
    init_weights,
    num_params,
    padding_mask,
)

H, NH = 16, 4


def reference_attention(a: Attention, x, memory=None, mask=None, causal=False):
    """Plain softmax attention with the module's weights, head by head."""
    mem = x if memory is None else memory
    q = x @ a.q.weight.T + a.q.bias
    k, v = (mem @ a.kv.weight.T + a.kv.bias).chunk(2, -1)
    hd = H // NH
    outs = []
    for h in range(NH):
        s = slice(h * hd, (h + 1) * hd)
        scores = q[..., s] @ k[..., s].transpose(1, 2) / math.sqrt(hd)  # (B, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, :], float("-inf"))
        if causal:
            T = x.shape[1]
            scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        outs.append(torch.softmax(scores, -1) @ v[..., s])
    return torch.cat(outs, -1) @ a.out.weight.T + a.out.bias


def test_attention_matches_reference_with_padding_and_causal_masks():
    torch.manual_seed(0)
    a = Attention(H, NH, dropout=0.0).eval()
    init_weights(a, std=0.3)
    x, mem = torch.randn(3, 5, H), torch.randn(3, 7, H)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[0, 4:] = False
    mask[2, 1:] = False
    assert torch.allclose(a(x, mem, padding_mask(mask)), reference_attention(a, x, mem, mask), atol=1e-5)
    assert torch.allclose(a(x, causal=True), reference_attention(a, x, causal=True), atol=1e-5)
    assert not torch.allclose(a(x, causal=True), a(x), atol=1e-3)


def test_encoder_layer_ignores_padding_and_survives_an_empty_row():
    torch.manual_seed(1)
    layer = EncoderLayer(H, NH, 32, dropout=0.0).eval()
    x = torch.randn(2, 4, H)
    padded = torch.cat([x, 5 * torch.randn(2, 3, H)], 1)  # arbitrary states at pad positions
    mask = torch.cat([torch.ones(2, 4), torch.zeros(2, 3)], 1).bool()
    assert torch.allclose(layer(x, None), layer(padded, padding_mask(mask))[:, :4], atol=1e-5)
    empty = torch.zeros(2, 7, dtype=torch.bool)
    assert torch.isfinite(layer(padded, padding_mask(empty))).all()
    # an empty row computes the same whatever the batch's width (it attended to every pad position)
    narrow = layer(padded[:, :5], padding_mask(empty[:, :5]))[:, 0]
    assert torch.allclose(layer(padded, padding_mask(empty))[:, 0], narrow, atol=1e-6)


@pytest.mark.parametrize("cross", [True, False])
def test_decoder_layer_steps_equal_full_pass(cross):
    torch.manual_seed(2)
    layer = DecoderLayer(H, NH, 32, dropout=0.0, cross=cross).eval()
    init_weights(layer, std=0.2)
    B, T, S = 3, 6, 5
    x, mem = torch.randn(B, T, H), torch.randn(B, S, H)
    mem_mask = torch.ones(B, S, dtype=torch.bool)
    mem_mask[1, 2:] = False
    full = layer(x, mem if cross else None, padding_mask(mem_mask) if cross else None)
    memory = layer.memory(mem, padding_mask(mem_mask)) if cross else None
    cache = LayerCache.empty(B, NH, 10, H // NH, x, memory)
    parts = [layer.step(x[:, a:b], cache) for a, b in ((0, 2), (2, 3), (3, 6))]  # chunks of 2, 1, 3 tokens
    assert torch.allclose(full, torch.cat(parts, 1), atol=1e-5)
    assert cache.length == T


def test_layer_cache_select_gathers_filled_positions_and_refuses_overflow():
    cache = LayerCache.empty(3, 2, 5, 4, torch.zeros(()))
    k, v = torch.randn(3, 2, 2, 4), torch.randn(3, 2, 2, 4)
    cache.append(k, v)
    picked = cache.select(torch.tensor([2, 2, 0, 1]), None)
    assert picked.length == 2 and picked.keys.shape == (4, 2, 5, 4)
    assert torch.equal(picked.keys[:, :, :2], k[[2, 2, 0, 1]])
    assert torch.equal(picked.values[:, :, :2], v[[2, 2, 0, 1]])
    keys, _, mask = picked.append(torch.randn(4, 2, 3, 4), torch.randn(4, 2, 3, 4))
    assert keys.shape[2] == 5
    assert mask.tolist() == [[True, True, True, False, False], [True, True, True, True, False], [True] * 5]
    with pytest.raises(ValueError, match="max_len"):
        picked.append(torch.randn(4, 2, 1, 4), torch.randn(4, 2, 1, 4))


def test_stack_applies_one_shared_layer_or_distinct_layers():
    def double() -> nn.Module:
        layer = nn.Linear(2, 2, bias=False)
        nn.init.eye_(layer.weight)
        with torch.no_grad():
            layer.weight.mul_(2)
        return layer

    shared, distinct = Stack(double, 3, share=True), Stack(double, 3, share=False)
    x = torch.ones(1, 2)
    assert torch.equal(shared(x), 8 * x) and torch.equal(distinct(x), 8 * x)  # three applications each
    assert num_params(shared) == 4 and num_params(distinct) == 12
    assert len({id(m) for m in shared.applied()}) == 1
    assert len({id(m) for m in distinct.applied()}) == 3


def test_embeddings_factorized_positions_and_soft_inputs():
    torch.manual_seed(3)
    emb = Embeddings(vocab_size=11, embed_dim=4, hidden_dim=H, max_len=8, dropout=0.0)
    assert emb.proj is not None and emb.proj.weight.shape == (H, 4)
    assert Embeddings(11, H, H, 8, 0.0).proj is None
    ids = torch.tensor([[5, 2, 9]])
    x = emb(ids)
    assert torch.allclose(x, emb.proj(emb.tok.weight[ids]) + emb.pos.weight[:3], atol=1e-6)
    soft = torch.nn.functional.one_hot(ids, 11).float()
    assert torch.allclose(emb(soft), x, atol=1e-6)
    shifted = emb(ids, start=4)
    assert torch.allclose(shifted - x, emb.pos.weight[4:7] - emb.pos.weight[:3], atol=1e-6)
    with pytest.raises(ValueError, match="max_len"):
        emb(ids, start=6)
