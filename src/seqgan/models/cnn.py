"""The SeqGAN paper's CNN discriminator (Zhang & LeCun / Kim style): convolutions of several
widths over the embedded sequence, max-over-time pooling, a highway layer, dropout, two classes.

As the original code: two output classes (fake, real) whose softmax cross-entropy equals
BCE-with-logits on their difference, which `forward` returns as the one "real" logit; the two
columns are kept as parameters because Adam and the L2 term (l2_reg_lambda 0.2 on the output
layer's weight and bias, `l2_penalty()` = their sum of squares / 2 as tf.nn.l2_loss) act on
each column, not on the difference. Initialisation as the original: embedding U(-1, 1);
convolution and output weights N(0, 0.1) truncated at 2 std, their biases 0.1; the highway's
weights and biases Glorot-uniform (tf.get_variable's default) and no extra gate bias (the
original calls `highway(..., 1, 0)`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqgan.models.discriminator import DiscriminatorConfig


class CNNDiscriminator(nn.Module):
    """Unconditional: the context arguments are accepted and ignored."""

    def __init__(self, cfg: DiscriminatorConfig):
        super().__init__()
        if len(cfg.filter_sizes) != len(cfg.num_filters):
            raise ValueError("filter_sizes and num_filters must have the same length")
        self.config = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.embed_dim)
        # one convolution per distinct width (the paper's 1..10 each once, 15 and 20)
        self.convs = nn.ModuleList(nn.Conv1d(cfg.embed_dim, n, k) for k, n in zip(cfg.filter_sizes, cfg.num_filters,
                                                                                  strict=True))
        total = sum(cfg.num_filters)
        self.highway = nn.Linear(total, 2 * total)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(total, 2)  # columns: fake, real
        self.min_len = max(cfg.filter_sizes)
        with torch.no_grad():
            for m in [*self.convs, self.out]:
                nn.init.trunc_normal_(m.weight, std=0.1, a=-0.2, b=0.2)
                nn.init.constant_(m.bias, 0.1)
            nn.init.uniform_(self.embed.weight, -1.0, 1.0)
            # the transform and the gate are two (total x total) matrices with biases of `total`:
            # Glorot-uniform limit sqrt(6 / (fan_in + fan_out)) = sqrt(3 / total) for each
            limit = (3.0 / total) ** 0.5
            nn.init.uniform_(self.highway.weight, -limit, limit)
            nn.init.uniform_(self.highway.bias, -limit, limit)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def l2_penalty(self) -> torch.Tensor:
        return 0.5 * (self.out.weight.pow(2).sum() + self.out.bias.pow(2).sum())

    @staticmethod
    def _conv_max(x: torch.Tensor, conv: nn.Conv1d, lengths: torch.Tensor | None) -> torch.Tensor:
        """relu(conv1d) then max over time, as one matmul over unfolded windows: the same numbers
        as F.conv1d, an order of magnitude faster on a CPU for these short, wide inputs.

        With `lengths` (B,), only the windows inside a row's tokens count (the first window when
        the row is shorter than the filter), so the score does not depend on the padding after it.
        """
        B, T, E = x.shape
        n, _, k = conv.weight.shape
        windows = x.unfold(1, k, 1).reshape(B, T - k + 1, E * k)  # (B, T-k+1, E*k), (E, k) order
        y = F.relu(windows @ conv.weight.reshape(n, E * k).T + conv.bias)  # (B, T-k+1, n)
        if lengths is not None:  # relu >= 0, so zeroing a window drops it from the max
            last = (lengths - k).clamp(min=0)  # the last window start inside the row
            y = y * (torch.arange(T - k + 1, device=x.device)[None, :] <= last[:, None]).unsqueeze(-1).to(y.dtype)
        return y.amax(dim=1)

    def forward(self, ctx: torch.Tensor | None, ctx_mask: torch.Tensor | None, resp: torch.Tensor,
                resp_mask: torch.Tensor) -> torch.Tensor:
        """resp: ids (B, T) or distributions (B, T, V) -> logits (B,). Padded positions embed as zeros;
        sequences shorter than the widest filter are zero-padded up to it. A row's score is the
        same at any padded width: the pooling sees the windows inside its tokens only (every
        window where no row is padded, as in the original's fixed-length sequences)."""
        x = self.embed(resp) if not resp.is_floating_point() else resp @ self.embed.weight  # (B, T, E)
        x = x * resp_mask.unsqueeze(-1).to(x.dtype)
        lengths = resp_mask.sum(1)
        if x.shape[1] < self.min_len:
            x = F.pad(x, (0, 0, 0, self.min_len - x.shape[1]))
        if bool((lengths == x.shape[1]).all()):
            lengths = None  # no padding: every window counts
        pooled = torch.cat([self._conv_max(x, conv, lengths) for conv in self.convs], dim=1)  # (B, total)
        transform, gate = self.highway(pooled).chunk(2, dim=1)
        g = torch.sigmoid(gate)
        h = g * F.relu(transform) + (1 - g) * pooled
        scores = self.out(self.drop(h))  # (B, 2)
        return scores[:, 1] - scores[:, 0]  # softmax over (fake, real) = sigmoid of this
