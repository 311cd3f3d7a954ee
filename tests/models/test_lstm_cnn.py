import numpy as np
import pytest
import torch
import torch.nn.functional as F

from seqgan.models.cnn import CNNDiscriminator
from seqgan.models.discriminator import DiscriminatorConfig
from seqgan.models.generator import GeneratorConfig
from seqgan.models.lstm import LSTMGenerator, load_oracle_params
from seqgan.models.sampling import sample
from seqgan.training.policy import shift_right


def lstm(V=30, seed=0) -> LSTMGenerator:
    torch.manual_seed(seed)
    return LSTMGenerator(GeneratorConfig(arch="lstm", conditional=False, vocab_size=V, embed_dim=8,
                                         hidden_dim=12)).eval()


def test_lstm_steps_equal_forward_and_select_repeats_rows():
    g = lstm()
    x = torch.randint(0, 30, (3, 7))
    full = g(None, None, x)
    st = g.start(None, None, batch_size=3)
    parts = [g.step(st, x[:, :2])] + [g.step(st, x[:, i : i + 1]) for i in range(2, 7)]
    assert torch.allclose(full, torch.cat(parts, 1), atol=1e-5)
    st = g.start(None, None, batch_size=3)
    g.step(st, x[:, :3])
    rep = st.select(torch.tensor([2, 2, 0]))
    assert torch.allclose(g.step(rep, x[[2, 2, 0], 3:4])[:, 0], full[[2, 2, 0], 3], atol=1e-5)


@pytest.mark.parametrize("kernel", [True, False])
def test_lstm_under_bf16_autocast_runs_with_or_without_the_cpus_reduced_precision_kernel(monkeypatch, kernel):
    """CPUs without AVX-512 have no oneDNN bf16 LSTM and raised under autocast; there the
    recurrence runs in fp32 (equal to the fp32 model's) while the output layer keeps bf16."""
    import seqgan.models.lstm as lstm_module

    if kernel and not lstm_module.autocast_lstm_works(torch.bfloat16):
        pytest.skip("this CPU has no bf16 LSTM kernel")
    if not kernel:
        monkeypatch.setattr(lstm_module, "autocast_lstm_works", lambda dtype: False)
    g = lstm().train()
    x = torch.randint(0, 30, (3, 7))
    h32, _ = g.lstm(g.embed(x))
    seen = []
    g.lstm.register_forward_hook(lambda m, args, out: seen.append(out[0]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = g(None, None, x)
        st = g.start(None, None, batch_size=3)
        stepped = g.step(st, x[:, :2])
    assert logits.dtype == stepped.dtype == torch.bfloat16
    assert torch.allclose(logits.float(), g(None, None, x), atol=0.05)
    if not kernel:
        assert seen[0].dtype == torch.float32 and torch.equal(seen[0], h32)
        assert torch.equal(seen[1], h32[:, :2])
    F.cross_entropy(logits.float().reshape(-1, 30), x.reshape(-1)).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in g.parameters() if p.requires_grad)


def numpy_oracle_logits(a: dict, tokens: np.ndarray) -> np.ndarray:
    """The original code's equations, written out in numpy. tokens: (B, T) inputs."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    B, T = tokens.shape
    H = a["Ui"].shape[0]
    h, c = np.zeros((B, H)), np.zeros((B, H))
    out = []
    for t in range(T):
        x = a["embedding"][tokens[:, t]]
        i = sig(x @ a["Wi"] + h @ a["Ui"] + a["bi"])
        f = sig(x @ a["Wf"] + h @ a["Uf"] + a["bf"])
        o = sig(x @ a["Wo_gate"] + h @ a["Uo_gate"] + a["bo_gate"])
        cc = np.tanh(x @ a["Wc"] + h @ a["Uc"] + a["bc"])
        c = f * c + i * cc
        h = o * np.tanh(c)
        out.append(h @ a["W_out"] + a["b_out"])
    return np.stack(out, 1)


def test_loaded_oracle_matches_the_original_equations(tmp_path):
    rng = np.random.default_rng(0)
    V, E, H = 50, 6, 5
    a = {"embedding": rng.normal(size=(V, E)), "W_out": rng.normal(size=(H, V)), "b_out": rng.normal(size=V)}
    for gate in ("i", "f", "o_gate", "c"):
        a[f"W{gate}"] = rng.normal(size=(E, H))
        a[f"U{gate}"] = rng.normal(size=(H, H))
        a[f"b{gate}"] = rng.normal(size=H)
    a = {k: v.astype(np.float32) for k, v in a.items()}
    np.savez(tmp_path / "o.npz", **a)
    model = load_oracle_params(tmp_path / "o.npz")
    tokens = rng.integers(0, V, (4, 9))
    ours = model(None, None, torch.from_numpy(tokens)).detach().numpy()
    assert np.allclose(ours, numpy_oracle_logits(a, tokens), atol=1e-4)


def test_missing_or_incomplete_oracle_file_is_a_clear_error(tmp_path):
    from seqgan.errors import SeqGANError

    with pytest.raises(SeqGANError, match="not found"):
        load_oracle_params(tmp_path / "none.npz")
    np.savez(tmp_path / "bad.npz", embedding=np.zeros((3, 2)))
    with pytest.raises(SeqGANError, match="lacks the oracle array"):
        load_oracle_params(tmp_path / "bad.npz")
    a = {"embedding": np.zeros((50, 6)), "W_out": np.zeros((5, 50)), "b_out": np.zeros(50)}
    for gate in ("i", "f", "o_gate", "c"):
        a |= {f"W{gate}": np.zeros((6, 5)), f"U{gate}": np.zeros((5, 5)), f"b{gate}": np.zeros(5)}
    np.savez(tmp_path / "shape.npz", **{**a, "Wf": np.zeros((5, 6))})  # one array transposed
    with pytest.raises(SeqGANError, match=r"Wf \(5, 6\) \(expected \(6, 5\)\)"):
        load_oracle_params(tmp_path / "shape.npz")
    np.savez(tmp_path / "flat.npz", **{**a, "embedding": np.zeros(300)})
    with pytest.raises(SeqGANError, match="must be matrices"):
        load_oracle_params(tmp_path / "flat.npz")
    np.savez(tmp_path / "nan.npz", **{**a, "W_out": np.full((5, 50), np.nan)})  # every NLL-oracle would be NaN
    with pytest.raises(SeqGANError, match="the oracle array W_out holds NaN or infinite values"):
        load_oracle_params(tmp_path / "nan.npz")
    np.savez(tmp_path / "zeros.npz", **a)
    assert load_oracle_params(tmp_path / "zeros.npz").config.vocab_size == 50  # finite and well shaped: loads


def test_lstm_mle_learns_a_deterministic_corpus():
    g = lstm(V=12, seed=1).train()
    data = torch.tensor([[4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4]]).repeat(16, 1)
    opt = torch.optim.Adam(g.parameters(), lr=0.02)
    losses = []
    for _ in range(300):
        loss = F.cross_entropy(g(None, None, shift_right(data, 0)).flatten(0, 1), data.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0] and losses[-1] < np.log(2) / 6 + 0.1  # only the first token is uncertain
    out = sample(g.eval(), None, None, max_len=6, batch_size=64, bos_id=0, eos_id=None, temperature=0.5,
                 generator=torch.Generator().manual_seed(0))
    rows = {tuple(r) for r in out.tolist()}
    assert rows <= {(4, 5, 6, 7, 8, 9), (9, 8, 7, 6, 5, 4)} and len(rows) == 2


def cnn(V=20, seed=0) -> CNNDiscriminator:
    torch.manual_seed(seed)
    return CNNDiscriminator(DiscriminatorConfig(arch="cnn", conditional=False, vocab_size=V, embed_dim=8, max_len=10,
                                                dropout=0.0, filter_sizes=[1, 2, 3, 5], num_filters=[4, 6, 6, 4])).eval()


def test_cnn_soft_one_hot_equals_ids_and_short_inputs_are_padded():
    d = cnn()
    x = torch.randint(0, 20, (5, 10))
    m = torch.ones_like(x, dtype=torch.bool)
    assert torch.allclose(d(None, None, x, m), d(None, None, F.one_hot(x, 20).float(), m), atol=1e-5)
    short = x[:, :3]  # shorter than the widest filter: zero-padded, no error
    assert d(None, None, short, m[:, :3]).shape == (5,)
    # padding positions embed as zeros: explicit pads equal implicit zero padding
    padded = torch.cat([short, torch.ones(5, 2, dtype=torch.long)], 1)
    pm = torch.cat([m[:, :3], torch.zeros(5, 2, dtype=torch.bool)], 1)
    assert torch.allclose(d(None, None, padded, pm), d(None, None, short, m[:, :3]), atol=1e-6)


def test_cnn_learns_a_separable_toy_task():
    d = cnn(seed=1).train()
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)

    def toy(n):  # real: contains the bigram (3, 4) somewhere; fake: never
        x = torch.randint(5, 20, (n, 10), generator=g)
        y = torch.randint(0, 2, (n,), generator=g).float()
        pos = torch.randint(0, 9, (n,), generator=g)
        rows = torch.nonzero(y > 0).squeeze(1)
        x[rows, pos[rows]], x[rows, pos[rows] + 1] = 3, 4
        return x, torch.ones_like(x, dtype=torch.bool), y

    for _ in range(200):
        x, m, y = toy(64)
        loss = F.binary_cross_entropy_with_logits(d(None, None, x, m), y) + 0.2 * d.l2_penalty() / 64
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, m, y = toy(512)
    assert ((d.eval()(None, None, x, m) > 0).float() == y).float().mean() > 0.95


def test_cnn_unfolded_convolution_equals_conv1d():
    d = cnn(seed=3)
    x = torch.randn(4, 10, 8)
    for conv in d.convs:
        ref = F.relu(conv(x.transpose(1, 2))).amax(2)
        assert torch.allclose(d._conv_max(x, conv, None), ref, atol=1e-5)


def test_cnn_score_does_not_depend_on_the_padding_after_a_row():
    d = cnn(seed=5).eval()
    rows = [torch.randint(0, 20, (n,)) for n in (3, 7, 12)]
    for r in rows:
        scores = []
        for width in (len(r), 12, 26, 40):  # alone, and padded in batches of other widths
            x = torch.zeros(1, width, dtype=torch.long)
            x[0, : len(r)] = r
            m = torch.arange(width)[None, :] < len(r)
            scores.append(d(None, None, x, m))
        assert torch.allclose(torch.cat(scores), scores[0].expand(4), atol=1e-6), (len(r), scores)
    # in one batch: each row scores as it does alone
    x = torch.zeros(3, 12, dtype=torch.long)
    m = torch.zeros(3, 12, dtype=torch.bool)
    for i, r in enumerate(rows):
        x[i, : len(r)], m[i, : len(r)] = r, True
    alone = torch.cat([d(None, None, r[None], torch.ones(1, len(r), dtype=torch.bool)) for r in rows])
    assert torch.allclose(d(None, None, x, m), alone, atol=1e-6)


def test_lstm_has_one_trainable_bias_per_gate_as_the_original():
    g = lstm(seed=2).init_normal_(0.1)
    assert torch.equal(g.lstm.bias_hh_l0, torch.zeros_like(g.lstm.bias_hh_l0))
    assert g.lstm.bias_ih_l0.std() > 0.05 and not g.lstm.bias_hh_l0.requires_grad
    opt = torch.optim.Adam(g.parameters(), lr=0.01)
    x = torch.randint(1, 30, (4, 6))
    F.cross_entropy(g(None, None, x).flatten(0, 1), x.flatten()).backward()
    opt.step()
    assert torch.equal(g.lstm.bias_hh_l0, torch.zeros_like(g.lstm.bias_hh_l0))


def test_cnn_has_the_originals_two_class_head_and_initialisation():
    d = cnn(seed=4)
    total = sum(d.config.num_filters)
    assert d.out.weight.shape == (2, total)  # (fake, real) columns, as the original's W (total x 2)
    x = torch.randint(0, 20, (6, 10))
    m = torch.ones_like(x, dtype=torch.bool)
    logit = d(None, None, x, m)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    # softmax cross-entropy over the two columns = BCE-with-logits on the returned difference
    pooled = torch.cat([d._conv_max(d.embed(x), c, None) for c in d.convs], 1)
    t, gate = d.highway(pooled).chunk(2, 1)
    h = torch.sigmoid(gate) * F.relu(t) + (1 - torch.sigmoid(gate)) * pooled
    scores = d.out(h)
    assert torch.allclose(logit, scores[:, 1] - scores[:, 0], atol=1e-6)
    assert torch.allclose(F.cross_entropy(scores, y), F.binary_cross_entropy_with_logits(logit, y.float()), atol=1e-6)
    # tf.nn.l2_loss of W and b: both columns
    assert torch.allclose(d.l2_penalty(), 0.5 * (d.out.weight.pow(2).sum() + d.out.bias.pow(2).sum()))
    # N(0, 0.1) truncated at 2 std, biases 0.1; highway Glorot-uniform with no gate offset
    for layer in [*d.convs, d.out]:
        assert layer.weight.abs().max() <= 0.2 and torch.all(layer.bias == 0.1)
    limit = (3.0 / total) ** 0.5
    assert d.highway.weight.abs().max() <= limit and d.highway.bias.abs().max() <= limit
    assert abs(d.highway.bias[total:].mean().item()) < limit / 2  # no -2 gate offset
