"""torchrun with 2 CPU processes (gloo) gives the weights of 1 process on the same global batches,
and resumes a checkpoint written by 1 process."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from support import dialogues, run_cli, write_jsonl
from test_resume import StopAfter

from seqgan.config import from_dict
from seqgan.data.tokenizer import Tokenizer
from seqgan.rundir import RunDir
from seqgan.runtime import seed_everything
from seqgan.training.mle import pretrain_generator
from seqgan.training.signals import Interrupted

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not built")


def _copy(src, dst) -> RunDir:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("metrics.jsonl", ".lock"))
    return RunDir(dst)


def torchrun(*args: str, nproc: int = 2, program: tuple = ("-m", "seqgan")) -> str:
    """Run `seqgan ARGS` (or another program: a script's path) on nproc processes; its stderr."""
    return _torchrun(*program, *args, nproc=nproc).stderr


def _torchrun(*cmd: str, nproc: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *map(str, cmd)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def assert_same_weights(a: RunDir, b: RunDir, stage: str, keys=("model",), atol=1e-5) -> None:
    ca = torch.load(a.checkpoint(stage, "last"), weights_only=True)
    cb = torch.load(b.checkpoint(stage, "last"), weights_only=True)
    assert ca["state"]["step"] == cb["state"]["step"]
    for key in keys:
        for name, w in ca[key].items():
            torch.testing.assert_close(cb[key][name], w, atol=atol, rtol=1e-4, msg=f"{key}.{name}")


@pytest.fixture(scope="module")
def pretrained(tiny_run, tmp_path_factory):
    """The tiny run with a briefly pretrained generator and discriminator."""
    run = _copy(tiny_run, tmp_path_factory.mktemp("ddp") / "base")
    assert run_cli("pretrain", "generator", "--run-dir", run.root, "pretrain.max_steps=10") == 0
    assert run_cli("pretrain", "discriminator", "--run-dir", run.root) == 0
    return run.root


def test_mle_on_two_processes_equals_one(tiny_run, tmp_path):
    one, two = _copy(tiny_run, tmp_path / "one"), _copy(tiny_run, tmp_path / "two")
    overrides = ("pretrain.max_steps=6", "pretrain.epochs=1")
    assert run_cli("pretrain", "generator", "--run-dir", one.root, *overrides) == 0
    log = torchrun("pretrain", "generator", "--run-dir", two.root, *overrides)
    assert log.count("best validation perplexity") == 1  # rank 0 alone speaks
    assert_same_weights(one, two, "generator")
    assert len(two.read_metrics("pretrain_generator")) == len(one.read_metrics("pretrain_generator"))


def test_adversarial_step_on_two_processes_equals_one(pretrained, tmp_path):
    one, two = _copy(pretrained, tmp_path / "one"), _copy(pretrained, tmp_path / "two")
    overrides = ("adversarial.steps=2", "adversarial.eval_every=100")
    assert run_cli("train", "--run-dir", one.root, *overrides) == 0
    torchrun("train", "--run-dir", two.root, *overrides)
    assert_same_weights(one, two, "adversarial", keys=("model", "rollout", "discriminator"))
    # what is logged is the whole batch's, not rank 0's rows (sample_len: the global mean length)
    logged = [[r[k] for r in run.read_metrics("adversarial") if "reward" in r for k in ("reward", "d_real_prob",
                                                                                         "sample_len")]
              for run in (one, two)]
    assert len(logged[0]) == 6
    assert logged[1] == pytest.approx(logged[0], abs=2e-4)


def test_two_processes_resume_a_one_process_checkpoint(tiny_run, tmp_path):
    full, resumed = _copy(tiny_run, tmp_path / "full"), _copy(tiny_run, tmp_path / "resumed")
    cfg = from_dict(full.read_config())
    cfg.pretrain.max_steps, cfg.pretrain.epochs, cfg.runtime.checkpoint_every = 8, 1, 10_000
    tok = Tokenizer.load(full.spm_model)
    seed_everything(cfg.runtime.seed)  # as `seqgan pretrain generator` does before building the model
    pretrain_generator(cfg, full, torch.device("cpu"), tok)
    seed_everything(cfg.runtime.seed)
    with pytest.raises(Interrupted):  # one process, stopped after 4 steps
        pretrain_generator(cfg, resumed, torch.device("cpu"), tok, stop=StopAfter(4))
    assert torch.load(resumed.checkpoint("generator", "last"), weights_only=True)["state"]["step"] == 4
    torchrun("pretrain", "generator", "--run-dir", resumed.root, "pretrain.max_steps=8", "pretrain.epochs=1",
             "runtime.checkpoint_every=10000")
    assert_same_weights(full, resumed, "generator")


def test_two_processes_with_dropout_resume_bitwise_as_they_went_on(tiny_run, tmp_path):
    """Every rank's random state is in the checkpoint: a resumed 2-process discriminator
    pretraining with dropout draws the masks the uninterrupted one drew (rank 1 used to reseed)."""
    base = _copy(tiny_run, tmp_path / "base")
    cfg = yaml.safe_load(base.config_path.read_text())
    cfg["model"]["discriminator"]["dropout"] = 0.3
    base.config_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert run_cli("pretrain", "generator", "--run-dir", base.root, "pretrain.max_steps=4") == 0
    whole, split = _copy(base.root, tmp_path / "whole"), _copy(base.root, tmp_path / "split")
    torchrun("pretrain", "discriminator", "--run-dir", whole.root, "discriminator.rounds=2")
    torchrun("pretrain", "discriminator", "--run-dir", split.root, "discriminator.rounds=1")
    assert torch.load(split.checkpoint("discriminator", "last"), weights_only=True)["state"]["round"] == 1
    torchrun("pretrain", "discriminator", "--run-dir", split.root, "discriminator.rounds=2")
    a = torch.load(whole.checkpoint("discriminator", "last"), weights_only=True)
    b = torch.load(split.checkpoint("discriminator", "last"), weights_only=True)
    assert a["state"]["round"] == b["state"]["round"] == 2
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert len(a["rng"]["ranks"]) == 2 and not torch.equal(a["rng"]["ranks"][0]["torch"], a["rng"]["ranks"][1]["torch"])


def test_seqgan_run_under_torchrun_prepares_once_and_one_process_commands_are_refused(tmp_path):
    """Every rank ran prepare in the same folder (they removed and made its partial folder under
    each other); a command that runs in one process (oracle, serve, ...) ran once per rank."""
    corpus = write_jsonl(tmp_path / "c.jsonl", dialogues(60, seed=3))
    run = RunDir(tmp_path / "r")
    # rank 0's checkpoints land late, as on a slow shared file system: a rank that went on to the
    # next stage without waiting read none (or the one before) and the run failed or drifted apart
    slow = tmp_path / "slow_writes.py"
    slow.write_text("import os, sys, time\nfrom seqgan import cli\nfrom seqgan.training import checkpoint\n"
                    "write = checkpoint.atomic_write_bytes\n"
                    "if os.environ['RANK'] == '0':\n"
                    "    checkpoint.atomic_write_bytes = lambda path, data: (time.sleep(0.5), write(path, data))\n"
                    "sys.exit(cli.main(sys.argv[1:]))\n")
    log = torchrun("run", "--config", "tiny", "--run-dir", run.root, "data.corpus=jsonl", f"data.path={corpus}",
                   "adversarial.steps=2", "discriminator.rounds=1", program=(slow,))
    assert log.count("[1/6] prepare") == 1 and run.eval_path.exists() and run.read_manifest() is not None
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "seqgan", "oracle", "--config", "tiny", "--run-dir", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode != 0 and "seqgan oracle: error: oracle runs in one process: start it without torchrun" \
        in out.stderr
    assert not (tmp_path / "o").exists()


def test_the_two_sample_classifier_trains_alike_on_every_rank(monkeypatch):
    """Without DDP, a discriminator trained on a rank's share of each batch drifted apart from the
    other ranks' (and a rank's total was its share's): every rank takes whole batches."""
    import copy

    import numpy as np

    from seqgan import distributed
    from seqgan.config import load_config
    from seqgan.models import build_discriminator
    from seqgan.models.discriminator import DiscriminatorConfig
    from seqgan.training.discriminator import DExamples, train_epochs
    from seqgan.training.optim import adam

    rng = np.random.default_rng(0)
    ex = DExamples([rng.integers(4, 30, 5) for _ in range(64)], [rng.integers(4, 30, 6) for _ in range(64)],
                   np.tile([1.0, 0.0], 32).astype(np.float32))
    torch.manual_seed(0)
    disc = build_discriminator(DiscriminatorConfig(vocab_size=30, embed_dim=8, hidden_dim=16, ff_dim=16,
                                                   num_layers=1, num_heads=2, max_len=12, dropout=0.0))
    dc = load_config("tiny").discriminator
    fits = {}
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "_current", distributed.World(rank=rank, size=2))
        model = copy.deepcopy(disc)
        fit = train_epochs(model, adam(model.parameters(), 1e-2), ex, 2, dc, torch.device("cpu"),
                           np.random.default_rng(1))
        fits[rank] = (fit, model.state_dict())
    monkeypatch.setattr(distributed, "_current", distributed.SINGLE)
    alone = copy.deepcopy(disc)
    fit = train_epochs(alone, adam(alone.parameters(), 1e-2), ex, 2, dc, torch.device("cpu"), np.random.default_rng(1))
    for rank in (0, 1):
        assert fits[rank][0] == fit
        assert all(torch.equal(fits[rank][1][k], v) for k, v in alone.state_dict().items())


def test_a_resumed_rank_keeps_a_stream_of_its_own(monkeypatch):
    from seqgan import distributed
    from seqgan.training.checkpoint import rng_state, set_rng_state

    seed_everything(0)
    saved = rng_state()
    rank0_next = torch.rand(4)
    draws = {}
    for rank in (0, 1, 1, 2):
        monkeypatch.setattr(distributed, "_current", distributed.World(rank=rank, size=3))
        set_rng_state(saved)
        draws.setdefault(rank, []).append(torch.rand(4))
    assert torch.equal(draws[0][0], rank0_next)  # rank 0 (and one process) continues exactly
    assert torch.equal(draws[1][0], draws[1][1])  # a rank's stream after a resume is reproducible
    assert not torch.equal(draws[1][0], rank0_next) and not torch.equal(draws[1][0], draws[2][0])


SKIP_ON_ONE_RANK = """
import json
import sys

import torch

from seqgan import distributed
from seqgan.training.optim import Stepper

world, _ = distributed.init("cpu")
torch.manual_seed(0)
model = torch.nn.Linear(3, 1)
before = model.weight.detach().clone()
loss = model(torch.ones(2, 3)).sum()
loss.backward()  # the same finite gradient on every rank, as DDP's average leaves it
seen = loss.detach() if world.rank == 0 else torch.tensor(float("inf"))  # rank 1's own loss is not finite
stepper = Stepper(torch.optim.SGD(model.parameters(), lr=0.1), model, 1.0, torch.device("cpu"), world=world)
stepped = stepper.step(seen)
with open(f"{sys.argv[1]}/rank{world.rank}.json", "w") as f:  # stdout would interleave the ranks' lines
    json.dump({"stepped": stepped, "moved": not torch.equal(model.weight, before)}, f)
distributed.shutdown()
"""


def test_a_step_one_rank_skips_is_skipped_on_every_rank(tmp_path):
    """A rank whose loss was not finite skipped its step while the others took it: their weights
    then differed for the rest of the run, with nothing said."""
    script = tmp_path / "skip.py"
    script.write_text(SKIP_ON_ONE_RANK)
    _torchrun(script, tmp_path, nproc=2)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert ranks == [{"stepped": False, "moved": False}] * 2
