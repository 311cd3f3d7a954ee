"""Optimizer and learning-rate schedule shared by the training loops."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn


def make_adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.98)):
    """AdamW with no weight decay on biases, norms and embeddings' positional tables (1-D params)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the base lr, then cosine decay to base * min_ratio at total_steps."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def grads_finite(model: nn.Module) -> bool:
    for p in model.parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            return False
    return True


class Stepper:
    """One optimizer step under a precision: fp32; bf16 autocast; fp16 autocast + GradScaler.

    `with stepper.autocast(): loss = ...`, then `stepper.backward(loss)` and `stepper.step(loss)`,
    which unscales (fp16), skips the step when the loss or a gradient is not finite (returns
    False; under fp16 the scaler also lowers its scale), clips and steps. The loss itself is
    best computed in fp32 (the training losses cast logits to float).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module, grad_clip: float,
                 device: torch.device, precision: str = "fp32"):
        self.optimizer, self.model, self.grad_clip = optimizer, model, grad_clip
        self.device, self.precision = device, precision
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, loss: torch.Tensor) -> bool:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if not (torch.isfinite(loss) and grads_finite(self.model)):
            if self.scaler is not None:
                self.scaler.update()  # an overflow: a smaller scale next time
            return False
        nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return True

    def state_dict(self) -> dict:
        return {} if self.scaler is None else {"scaler": self.scaler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
