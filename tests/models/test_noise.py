"""Keyed noise: uniform, reproducible, independent of the batch a row is sampled in."""

import torch

from seqgan.models.generator import GeneratorConfig, TransformerGenerator
from seqgan.models.noise import RowNoise, splitmix64
from seqgan.models.sampling import sample
from seqgan.training.rollout import rollout_rewards


def test_splitmix64_matches_the_reference_values():
    # splitmix64 of 0, 1, 2 (the finalizer with the golden-ratio increment), as unsigned 64-bit ints
    out = splitmix64(torch.tensor([0, 1, 2])).tolist()
    assert [x % (1 << 64) for x in out] == [0xE220A8397B1DCDAF, 0x910A2DEC89025CC1, 0x975835DE1C9756CE]


def test_uniforms_are_uniform_and_depend_only_on_seed_key_and_step():
    n = RowNoise(7, torch.arange(20_000))
    u = torch.stack([n.uniform(s) for s in range(5)])  # (5, 20000)
    assert 0 <= float(u.min()) and float(u.max()) < 1
    assert abs(float(u.mean()) - 0.5) < 0.005 and abs(float(u.var()) - 1 / 12) < 0.002
    counts = torch.histc(u.flatten(), bins=20, min=0, max=1)
    chi2 = float(((counts - counts.mean()) ** 2 / counts.mean()).sum())
    assert chi2 < 45  # 19 degrees of freedom: p < 0.001 above ~43.8
    assert abs(float(torch.corrcoef(u[:2])[0, 1])) < 0.03  # successive draws uncorrelated
    again = RowNoise(7, torch.tensor([19_999, 3])).uniform(2)
    assert torch.equal(again, u[2, [19_999, 3]])
    assert not torch.equal(RowNoise(8, torch.arange(5)).uniform(0), u[0, :5])
    grid = n.select(torch.arange(3)).grid((4, 6), salt=1)
    assert grid.shape == (3, 4, 6) and torch.equal(grid, RowNoise(7, torch.arange(3)).grid((4, 6), salt=1))


def _gen(seed=0):
    torch.manual_seed(seed)
    cfg = GeneratorConfig(vocab_size=30, embed_dim=16, hidden_dim=32, ff_dim=64, num_layers=2, num_heads=2,
                          dropout=0.0, max_len=24)
    return TransformerGenerator(cfg).eval()


def test_a_row_samples_the_same_tokens_alone_in_a_batch_and_in_any_order():
    gen = _gen()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, 30, (6, 5), generator=g)
    mask = torch.ones_like(src, dtype=torch.bool)
    batch = sample(gen, src, mask, max_len=10, generator=torch.Generator().manual_seed(3))
    for i in (0, 4):
        alone = sample(gen, src[i : i + 1], mask[i : i + 1], max_len=10, generator=torch.Generator().manual_seed(3),
                       row_ids=torch.tensor([i]))
        assert torch.equal(alone[0], batch[i, : alone.shape[1]])
    order = torch.tensor([5, 2, 0, 1, 4, 3])
    shuffled = sample(gen, src[order], mask[order], max_len=10, generator=torch.Generator().manual_seed(3),
                      row_ids=order)
    assert torch.equal(shuffled, batch[order, : shuffled.shape[1]])


def test_rollout_rewards_of_a_row_do_not_depend_on_the_rest_of_the_batch():
    gen = _gen(1)
    g = torch.Generator().manual_seed(0)
    src = torch.randint(4, 30, (4, 5), generator=g)
    seqs = torch.randint(4, 30, (4, 6), generator=g)

    def reward(s, m, resp, resp_mask):
        return (resp == 7).float().mean(1)  # any function of the completions

    kw = dict(max_len=8, bos_id=2, eos_id=None, pad_id=1)
    full = rollout_rewards(gen, reward, src, None, seqs, 3, generator=torch.Generator().manual_seed(1), **kw)
    part = rollout_rewards(gen, reward, src[2:], None, seqs[2:], 3, generator=torch.Generator().manual_seed(1),
                           row_ids=torch.tensor([2, 3]), **kw)
    assert torch.equal(part, full[2:])
