"""The optimizer helpers: the fused Adam kernel is the per-tensor update, and a resumed
optimizer keeps its own kernel whatever the checkpoint was written with."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from seqgan.training.optim import Stepper, adam, load_optimizer_state


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(50, 16), nn.Flatten(), nn.Linear(16 * 6, 32), nn.ReLU(), nn.Linear(32, 1))


def _steps(model: nn.Module, opt: torch.optim.Optimizer, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        g = torch.Generator().manual_seed(i)
        x = torch.randint(0, 50, (8, 6), generator=g)
        y = torch.rand(8, generator=g)
        loss = nn.functional.mse_loss(model(x).squeeze(-1), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


@pytest.mark.parametrize("decoupled", [False, True])
def test_fused_adam_takes_the_same_steps_as_the_per_tensor_loop(decoupled):
    fused, plain = _model(), _model()
    opt_f = adam(fused.parameters(), 1e-2, decoupled=decoupled, weight_decay=0.01 if decoupled else 0.0)
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt_p = kind(plain.parameters(), lr=1e-2, weight_decay=0.01 if decoupled else 0.0, foreach=False)
    assert opt_f.param_groups[0]["fused"]  # this torch has the CPU kernel (>= 2.4)
    start = [p.detach().clone() for p in fused.parameters()]
    _steps(fused, opt_f, 30)
    _steps(plain, opt_p, 30)
    for a, b, s in zip(fused.parameters(), plain.parameters(), start, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
        assert (a - s).abs().max() > 1e-3  # and both really moved


def test_a_per_tensor_checkpoint_resumes_into_the_fused_kernel_on_the_same_path():
    ref = _model()
    opt_ref = torch.optim.Adam(ref.parameters(), lr=1e-2, foreach=False)
    _steps(ref, opt_ref, 20)

    first = _model()
    opt_first = torch.optim.Adam(first.parameters(), lr=1e-2, foreach=False)  # an older checkpoint's kernel
    _steps(first, opt_first, 10)
    saved_model, saved_opt = first.state_dict(), opt_first.state_dict()

    resumed = _model(seed=1)
    resumed.load_state_dict(saved_model)
    opt = adam(resumed.parameters(), 1e-2)
    load_optimizer_state(opt, saved_opt)
    assert opt.param_groups[0]["fused"] is True  # torch alone would restore fused=None from the checkpoint
    assert all(s["step"].dtype == torch.float32 and int(s["step"]) == 10 for s in opt.state.values())
    _steps(resumed, opt, 10, start=10)
    for a, b in zip(resumed.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)

    fused_state = opt.state_dict()
    back = torch.optim.Adam(_model().parameters(), lr=1e-2, foreach=False)
    load_optimizer_state(back, fused_state)
    assert not back.param_groups[0]["fused"]  # and the other way round


def test_betas_and_weight_decay_given_on_a_resume_take_effect():
    """They came back from the checkpoint, while config.yaml recorded the command's values."""
    from seqgan.training.optim import make_adamw

    model = _model()
    opt = make_adamw(model, 1e-2, 0.01, betas=(0.9, 0.98))
    _steps(model, opt, 3)
    resumed = make_adamw(model, 2e-2, 0.05, betas=(0.8, 0.9))
    load_optimizer_state(resumed, opt.state_dict())
    assert [(g["lr"], g["weight_decay"], g["betas"]) for g in resumed.param_groups] == [
        (2e-2, 0.05, (0.8, 0.9)), (2e-2, 0.0, (0.8, 0.9))]
    assert all(int(s["step"]) == 3 for s in resumed.state.values())  # the moments are the checkpoint's


def test_adamw_decays_the_matrices_and_not_biases_or_norms():
    from seqgan.models.generator import GeneratorConfig, TransformerGenerator
    from seqgan.training.optim import make_adamw

    gen = TransformerGenerator(GeneratorConfig(vocab_size=40, embed_dim=8, hidden_dim=16, ff_dim=32, num_layers=1,
                                               num_heads=2, max_len=12, dropout=0.0))
    decay, no_decay = (set(map(id, g["params"])) for g in make_adamw(gen, 1e-3, 0.01).param_groups)
    names = {id(p): n for n, p in gen.named_parameters()}
    assert {names[i] for i in decay} == {n for n, p in gen.named_parameters() if p.dim() >= 2}
    assert any(n.endswith("pos.weight") for n in map(names.get, decay))  # as the docstring says
    assert {names[i] for i in no_decay} == {n for n, p in gen.named_parameters() if p.dim() == 1}
    assert {"out_bias", "enc_norm.weight", "decoder.layers.0.ln1.weight"} <= set(map(names.get, no_decay))


def test_stepper_skips_a_non_finite_gradient_in_its_single_pass_and_clips_finite_ones():
    model = _model()
    opt = adam(model.parameters(), 1e-2)
    stepper = Stepper(opt, model, grad_clip=0.5, device=torch.device("cpu"))
    before = [p.detach().clone() for p in model.parameters()]
    loss = model(torch.randint(0, 50, (4, 6))).sum()
    loss.backward()
    model[2].weight.grad[0, 0] = float("inf")
    assert stepper.step(loss) is False
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))

    opt.zero_grad(set_to_none=True)
    loss = 1e3 * model(torch.randint(0, 50, (4, 6))).sum()
    loss.backward()
    assert stepper.step(loss) is True
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in model.parameters()]))
    assert float(norm) == pytest.approx(0.5, rel=1e-4)  # clipped in place before the step
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
