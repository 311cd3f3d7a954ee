"""Optimizer and learning-rate schedule shared by the training loops."""

from __future__ import annotations

import contextlib
import math

import torch
from torch import nn

from seqgan import distributed
from seqgan.runtime import note_emulated_precision


def adam(params, lr: float, *, decoupled: bool = False, **kwargs) -> torch.optim.Optimizer:
    """Adam (or AdamW with `decoupled`) with the fused kernel where this torch has one for the
    parameters' device: the same update as the per-tensor loop, in one pass over the weights
    (the paper's CNN discriminator's epoch 1.45x faster on a CPU: benchmarks/oracle_sampling.py)."""
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    params = list(params)
    try:
        return cls(params, lr=lr, fused=True, **kwargs)
    except (RuntimeError, ValueError, TypeError):  # no fused kernel for this device or dtype
        return cls(params, lr=lr, **kwargs)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """`optimizer.load_state_dict(state)`: the moments and step counts from `state`, every group
    option (learning rate, betas, weight decay, kernel) from this optimizer.

    torch restores every saved group option, so a checkpoint written by a build without the
    fused kernel would otherwise switch it off (and one written with it would switch it on where
    it does not exist), and the saved learning rate, betas and weight decay would override the
    ones the command was given: settings changed on a resume must take effect, as config.yaml
    then records them. A scheduled optimizer then takes its rate from the schedule:
    `resume_schedule`.
    """
    options = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, kernel in zip(optimizer.param_groups, options, strict=True):
        group.update(kernel)
        if kernel.get("fused"):  # the fused kernel wants its step counts as float tensors on the device
            for p in group["params"]:
                st = optimizer.state.get(p, {})
                if torch.is_tensor(st.get("step")):
                    st["step"] = st["step"].to(device=p.device, dtype=torch.float32)


def make_adamw(model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.98)):
    """AdamW that decays the matrices (token and position embeddings included) and not the 1-D
    parameters (biases and norms)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return adam(groups, lr, decoupled=True, betas=betas)


def resume_schedule(scheduler: torch.optim.lr_scheduler.LambdaLR) -> None:
    """After `scheduler.load_state_dict`: the schedule's position is the saved one, its peak the
    optimizer's own `initial_lr` (the command's learning rate), and each group's current rate
    follows from both."""
    groups = scheduler.optimizer.param_groups
    scheduler.base_lrs = [g["initial_lr"] for g in groups]
    for g, base, factor in zip(groups, scheduler.base_lrs, scheduler.lr_lambdas, strict=True):
        g["lr"] = base * factor(scheduler.last_epoch)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                  min_ratio: float = 0.1) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warmup to the base lr, then cosine decay to base * min_ratio at total_steps."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class Stepper:
    """One optimizer step under a precision: fp32; bf16 autocast; fp16 autocast + GradScaler.

    `with stepper.autocast(): loss = ...`, then `stepper.backward(loss)` and `stepper.step(loss)`,
    which unscales (fp16), skips the step when the loss or a gradient is not finite (returns
    False; under fp16 the scaler also lowers its scale), clips and steps. The loss itself is
    best computed in fp32 (the training losses cast logits to float).

    `world`: the processes that step this model together (under DDP); each skips when any of them
    would, since the losses differ between ranks though the averaged gradients do not.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, model: nn.Module, grad_clip: float,
                 device: torch.device, precision: str = "fp32", world: distributed.World = distributed.SINGLE):
        self.optimizer, self.model, self.grad_clip = optimizer, model, grad_clip
        self.device, self.precision, self.world = device, precision, world
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
        if device.type == "cpu" and precision != "fp32":
            note_emulated_precision(precision)

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
        # the gradient norm is finite exactly when every gradient is (or their squares overflow
        # fp32, a step as well skipped): one pass over the gradients does the check and the clip
        norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        finite = bool(torch.isfinite(loss)) and bool(torch.isfinite(norm))
        if self.world.distributed:  # a rank that stepped alone would leave the others for good
            finite = not self.world.any(not finite)[0]
        if not finite:
            if self.scaler is not None:
                self.scaler.update()  # an overflow: a smaller scale next time
            return False
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


def check_finite_weights(model: nn.Module, what: str, setting: str) -> None:
    """A step whose gradients were finite can still leave weights that are not (a learning rate far
    too large): stop there, before a validation or a checkpoint reads them."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise FloatingPointError(f"the {what} diverged: its weights are no longer finite (nothing saved from "
                                 f"this point); lower {setting} and start it again in a new --run-dir")


class NonfiniteGuard:
    """Counts the steps a Stepper skipped; `limit` of them in a row raise FloatingPointError
    (`N non-finite WHAT steps in a row; last good checkpoint kept at PATH`). A resumed stage passes
    the counts its checkpoint kept (see `counts`)."""

    def __init__(self, limit: int, what: str, checkpoint: str = "", skipped: int = 0, in_a_row: int = 0,
                 model: nn.Module | None = None, setting: str = ""):
        self.limit, self.what, self.checkpoint = limit, what, checkpoint
        self.skipped, self.in_a_row = skipped, in_a_row
        self.model, self.setting = model, setting  # a skipped step checks the weights: every later one would fail

    def check_weights(self) -> None:
        """Before a validation or a checkpoint reads the weights: see `check_finite_weights`."""
        if self.model is not None:
            check_finite_weights(self.model, self.what, self.setting)

    def counts(self, prefix: str = "") -> dict:
        """The counts as a stage's checkpoint state keeps them (`prefix` tells two guards apart)."""
        return {f"{prefix}skipped": self.skipped, f"{prefix}nonfinite": self.in_a_row}

    def record(self, stepped: bool) -> bool:
        """Note one step's outcome; returns `stepped`."""
        if stepped:
            self.in_a_row = 0
            return True
        self.skipped, self.in_a_row = self.skipped + 1, self.in_a_row + 1
        self.check_weights()
        if self.in_a_row >= self.limit:
            where = f" at {self.checkpoint}" if self.checkpoint else ""
            raise FloatingPointError(f"{self.in_a_row} non-finite {self.what} steps in a row; last good "
                                     f"checkpoint kept{where}")
        return False
