"""The oracle of the synthetic benchmark: a random (or the original code's) LSTM, its samples,
and NLL-oracle, the mean per-token NLL of a generator's samples under the oracle."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.models.generator import GeneratorConfig
from seqgan.models.lstm import LSTMGenerator, load_oracle_params
from seqgan.models.sampling import sample
from seqgan.training.policy import shift_right


def make_oracle(vocab_size: int, embed_dim: int, hidden_dim: int, seed: int) -> LSTMGenerator:
    """An LSTM with every parameter N(0, 1), as the paper's oracle, from a seed."""
    torch.manual_seed(seed)
    model = LSTMGenerator(GeneratorConfig(arch="lstm", conditional=False, vocab_size=vocab_size, embed_dim=embed_dim,
                                          hidden_dim=hidden_dim, dropout=0.0))
    model.init_normal_(1.0)  # one bias per gate, as the original: the second stays zero
    return model.eval()


def load_oracle(path: str) -> LSTMGenerator:
    return load_oracle_params(path)


@torch.no_grad()
def sample_oracle(model: nn.Module, num: int, seq_len: int, *, start_token: int = 0, batch_size: int = 1024,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """num x seq_len sequences (no eos: every row has seq_len tokens), in large batches. (num, seq_len)"""
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, num, batch_size):
        n = min(batch_size, num - s)
        out.append(sample(model, None, None, max_len=seq_len, batch_size=n, bos_id=start_token, eos_id=None,
                          pad_id=start_token, generator=generator))
    model.train(was_training)
    return torch.cat(out).cpu()


@torch.no_grad()
def nll_oracle(oracle: nn.Module, samples: torch.Tensor, start_token: int = 0, batch_size: int = 2048) -> float:
    """Mean per-token NLL (nats) of `samples` (N, T) under `oracle`."""
    device = next(oracle.parameters()).device
    total, count = 0.0, 0
    for s in range(0, len(samples), batch_size):
        x = samples[s : s + batch_size].to(device)
        logits = oracle(None, None, shift_right(x, start_token))
        total += float(F.cross_entropy(logits.flatten(0, 1).float(), x.flatten(), reduction="sum"))
        count += x.numel()
    return total / max(1, count)
