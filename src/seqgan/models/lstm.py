"""The SeqGAN paper's LSTM generator (and, with loaded weights, its oracle).

Same decoding interface as the Transformer generator (`forward`, `start`, `step`, `select`),
so sampling, rollouts and NLL code serve both. Unconditional: src and src_mask are ignored.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import torch
from torch import nn

from seqgan.errors import SeqGANError
from seqgan.models.generator import GeneratorConfig

ORACLE_ARRAYS = ("embedding", "Wi", "Ui", "bi", "Wf", "Uf", "bf", "Wo_gate", "Uo_gate", "bo_gate", "Wc", "Uc", "bc",
                 "W_out", "b_out")


@cache
def autocast_lstm_works(dtype: torch.dtype) -> bool:
    """Whether nn.LSTM runs under CPU autocast to `dtype`. Autocast sends it to oneDNN's
    reduced-precision LSTM, which CPUs without AVX-512 (AVX2 only) lack: there it raises
    "could not create a primitive descriptor". Tried once per dtype on a 1-wide LSTM."""
    try:
        with torch.autocast("cpu", dtype=dtype):
            nn.LSTM(1, 1)(torch.zeros(1, 1, 1))
    except RuntimeError:
        return False
    return True


def _cpu_autocast_dtype() -> torch.dtype | None:
    """The dtype CPU autocast casts to where it is on, else None."""
    if not torch.is_autocast_enabled("cpu"):
        return None
    return torch.get_autocast_dtype("cpu")


class LSTMState:
    """(h, c) of the one-layer LSTM: (1, B, hidden) each."""

    def __init__(self, h: torch.Tensor, c: torch.Tensor, length: int = 0):
        self.h, self.c, self.length = h, c, length

    def select(self, index: torch.Tensor) -> LSTMState:
        return LSTMState(self.h.index_select(1, index), self.c.index_select(1, index), self.length)


class LSTMGenerator(nn.Module):
    """Embedding -> one LSTM layer -> linear to the vocabulary (the original code's generator)."""

    def __init__(self, cfg: GeneratorConfig):
        super().__init__()
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        self.lstm = nn.LSTM(cfg.embed_dim, cfg.hidden_dim, batch_first=True)
        # one bias per gate, as the original code: nn.LSTM's second bias (always the same gradient
        # as the first, so under Adam the pair would move twice as fast) stays zero and fixed
        with torch.no_grad():
            self.lstm.bias_hh_l0.zero_()
        self.lstm.bias_hh_l0.requires_grad_(False)
        self.out = nn.Linear(cfg.hidden_dim, cfg.vocab_size)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def _lstm(self, x: torch.Tensor, hx: tuple[torch.Tensor, torch.Tensor] | None = None):
        """nn.LSTM, in fp32 under a CPU autocast whose dtype this CPU's LSTM kernel lacks (the
        recurrence is 4 x hidden wide, a small share of the work; the output layer keeps autocast)."""
        dtype = _cpu_autocast_dtype() if x.device.type == "cpu" else None
        if dtype is None or autocast_lstm_works(dtype):
            return self.lstm(x, hx)
        with torch.autocast("cpu", enabled=False):
            return self.lstm(x.float(), None if hx is None else (hx[0].float(), hx[1].float()))

    @torch.no_grad()
    def init_normal_(self, std: float) -> LSTMGenerator:
        """Every parameter N(0, std), as the original code's generator (std 0.1); the fixed zero
        second bias stays zero."""
        for p in self.parameters():
            if p.requires_grad:
                p.normal_(0.0, std)
        return self

    def forward(self, src: torch.Tensor | None, src_mask: torch.Tensor | None, tgt_in: torch.Tensor) -> torch.Tensor:
        """Teacher forcing: logits (B, T, V)."""
        h, _ = self._lstm(self.embed(tgt_in))  # (B, T, hidden)
        return self.out(h)

    def start(self, src: torch.Tensor | None, src_mask: torch.Tensor | None,
              batch_size: int | None = None) -> LSTMState:
        B = src.shape[0] if src is not None else batch_size
        z = self.out.weight.new_zeros(1, B, self.config.hidden_dim)
        return LSTMState(z, z.clone())

    def step(self, state: LSTMState, tokens: torch.Tensor) -> torch.Tensor:
        """Feed k tokens (B, k); logits (B, k, V); the state moves on in place."""
        h, (state.h, state.c) = self._lstm(self.embed(tokens), (state.h, state.c))
        state.length += tokens.shape[1]
        return self.out(h)


def load_oracle_params(path: str | Path) -> LSTMGenerator:
    """The original SeqGAN code's oracle (.npz of embedding, Wi, Ui, bi, ..., W_out, b_out).

    Its gates are i, f, o = sigmoid(x W + h U + b), c~ = tanh(x Wc + h Uc + bc),
    c = f c + i c~, h = o tanh(c); inputs multiply on the right (x @ W), so PyTorch's
    weight_ih (gate order i, f, g, o) is the transposed concatenation.
    """
    path = Path(path)
    if not path.is_file():
        raise SeqGANError(f"oracle parameters not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: torch.from_numpy(z[k].astype(np.float32)) for k in ORACLE_ARRAYS}
    except KeyError as e:
        raise SeqGANError(f"{path} lacks the oracle array {e}") from None
    except (OSError, ValueError) as e:
        raise SeqGANError(f"{path} is not a readable .npz file: {e}") from None
    if a["embedding"].dim() != 2 or a["Ui"].dim() != 2:
        raise SeqGANError(f"{path}: embedding and Ui must be matrices, got shapes {tuple(a['embedding'].shape)} "
                          f"and {tuple(a['Ui'].shape)}")
    V, E = a["embedding"].shape
    H = a["Ui"].shape[0]
    want = {"embedding": (V, E), "W_out": (H, V), "b_out": (V,)}
    for gate in ("i", "f", "c", "o_gate"):
        want |= {f"W{gate}": (E, H), f"U{gate}": (H, H), f"b{gate}": (H,)}
    wrong = [f"{k} {tuple(a[k].shape)} (expected {shape})" for k, shape in want.items() if tuple(a[k].shape) != shape]
    if wrong:
        raise SeqGANError(f"{path}: arrays of other shapes than one oracle's (vocabulary {V}, embedding {E}, "
                          f"hidden {H}): {', '.join(wrong[:3])}")
    bad = [k for k in ORACLE_ARRAYS if not bool(torch.isfinite(a[k]).all())]
    if bad:  # its samples and every NLL-oracle would be NaN
        raise SeqGANError(f"{path}: the oracle array{'s' if len(bad) > 1 else ''} {', '.join(bad)} "
                          f"hold{'' if len(bad) > 1 else 's'} NaN or infinite values")
    model = LSTMGenerator(GeneratorConfig(arch="lstm", conditional=False, vocab_size=V, embed_dim=E, hidden_dim=H,
                                          dropout=0.0))
    with torch.no_grad():
        model.embed.weight.copy_(a["embedding"])
        model.lstm.weight_ih_l0.copy_(torch.cat([a["Wi"], a["Wf"], a["Wc"], a["Wo_gate"]], dim=1).T)
        model.lstm.weight_hh_l0.copy_(torch.cat([a["Ui"], a["Uf"], a["Uc"], a["Uo_gate"]], dim=1).T)
        model.lstm.bias_ih_l0.copy_(torch.cat([a["bi"], a["bf"], a["bc"], a["bo_gate"]]))  # bias_hh: zero
        model.out.weight.copy_(a["W_out"].T)
        model.out.bias.copy_(a["b_out"])
    return model.eval()
