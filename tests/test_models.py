"""The LightningModules: step isolation, sample weights in the losses, NaN guard."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch

from itsr.data.datamodule import LabelledImages, TensorDataModule
from itsr.models import AdversarialAutoencoderModule, AutoencoderModule, NonFiniteLossError
from itsr.models.base import generator_loss, generator_loss_per_sample, weighted_mean
from itsr.scoring import reconstruction_error, standard_normal_log_likelihood
from tests.conftest import toy_images


def tiny_ae(dim: int = 16) -> AutoencoderModule:
    return AutoencoderModule(input_dim=dim, hidden=[24, 24], latent_dim=4, lr=1e-2, betas=[0.9, 0.999])


def tiny_aae(dim: int = 16) -> AdversarialAutoencoderModule:
    return AdversarialAutoencoderModule(
        input_dim=dim,
        hidden=[24, 24],
        latent_dim=2,
        disc_hidden=[24, 24],
        lr_reconstruction=1e-3,
        lr_discriminator=1e-3,
        lr_generator=1e-3,
        betas_reconstruction=[0.9, 0.999],
        betas_adversarial=[0.5, 0.999],
    )


def trainer(**kwargs) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


class StepRecorder(pl.Callback):
    """Wraps each optimizer's step to record which parameters that step changed."""

    def __init__(self):
        self.changed: list[set[str]] = []

    def on_train_start(self, trainer, pl_module):
        for opt in trainer.optimizers:
            inner = opt.step

            def step(*args, _inner=inner, **kwargs):
                before = {n: p.detach().clone() for n, p in pl_module.named_parameters()}
                out = _inner(*args, **kwargs)
                self.changed.append({n for n, p in pl_module.named_parameters() if not torch.equal(before[n], p)})
                return out

            opt.step = step


def test_each_aae_step_changes_only_its_own_optimizers_parameters(toy_datamodule) -> None:
    module = tiny_aae()
    recorder = StepRecorder()
    trainer(max_epochs=1, limit_train_batches=2, callbacks=[recorder]).fit(module, datamodule=toy_datamodule)
    prefix = lambda names: {n.split(".")[0] for n in names}  # noqa: E731
    assert len(recorder.changed) == 6  # 2 batches x 3 steps
    for rec, disc, gen in zip(*[iter(recorder.changed)] * 3):
        assert prefix(rec) == {"encoder", "decoder"}
        assert prefix(disc) == {"discriminator"}
        assert prefix(gen) == {"encoder"}
        n_encoder = sum(1 for n, _ in module.named_parameters() if n.startswith("encoder"))
        assert len(gen) == n_encoder


def test_weight_zero_removes_a_sample_exactly() -> None:
    torch.manual_seed(0)
    module = tiny_ae()
    x = torch.rand(8, 16)
    w = torch.tensor([1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0])

    def grads(inputs, weights):
        module.zero_grad()
        loss = weighted_mean(reconstruction_error(inputs, module(inputs)), weights)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in module.parameters()]

    loss_all, g_all = grads(x, w)
    keep = w != 0
    loss_sub, g_sub = grads(x[keep], torch.ones(int(keep.sum())))
    assert torch.allclose(loss_all, loss_sub)
    for a, b in zip(g_all, g_sub):
        assert torch.allclose(a, b, atol=1e-7)


def test_negative_weight_increases_that_samples_reconstruction_error() -> None:
    torch.manual_seed(0)
    module = tiny_ae()
    x = torch.rand(32, 16)
    w = torch.ones(32)
    w[0] = -1.0
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    start = reconstruction_error(x, module(x)).detach()
    for _ in range(60):
        opt.zero_grad()
        weighted_mean(reconstruction_error(x, module(x)), w).backward()
        opt.step()
    end = reconstruction_error(x, module(x)).detach()
    assert end[0] > start[0] * 1.5, "the negatively weighted sample is pushed away"
    assert end[1:].mean() < start[1:].mean(), "the others are still learned"


def test_a_nan_loss_stops_training_naming_step_and_epoch() -> None:
    x = torch.rand(64, 16)
    x[5, 3] = float("nan")
    flags = torch.zeros(64, dtype=torch.bool)
    images = LabelledImages(x, flags.long(), flags)
    dm = TensorDataModule(images, {"observed": images}, batch_size=64, seed=0)
    with pytest.raises(NonFiniteLossError, match=r"reconstruction loss became nan at epoch 0"):
        trainer(max_epochs=1).fit(tiny_aae(), datamodule=dm)


def test_scores_do_not_depend_on_the_scoring_batch() -> None:
    module = tiny_aae()
    x = torch.rand(50, 16)
    a, b = module.score(x, batch_size=7), module.score(x, batch_size=50)
    for key in ("rec_error", "log_likelihood", "code"):
        assert torch.allclose(a[key], b[key], atol=1e-6)
    assert module.training, "score() restores the training mode"


def test_compiled_networks_give_the_eager_losses(toy_datamodule) -> None:
    def losses(compiled: bool) -> dict[str, float]:
        torch.manual_seed(0)
        module = tiny_aae()
        if compiled:
            # aot_eager traces and runs the graphs without code generation: the same path as
            # inductor up to the kernels, fast enough for a unit test
            module.compile_networks(backend="aot_eager")
        t = trainer(max_epochs=2, limit_train_batches=3)
        t.fit(module, datamodule=toy_datamodule)
        return {k: float(v) for k, v in t.callback_metrics.items()}

    from torch._dynamo.utils import counters

    counters.clear()
    eager, compiled = losses(False), losses(True)
    assert counters["stats"]["unique_graphs"] >= 3, "encoder, decoder and discriminator were compiled"
    assert set(eager) == {"loss/reconstruction", "loss/discriminator", "loss/generator"}
    for key, value in eager.items():
        assert compiled[key] == pytest.approx(value, rel=1e-4, abs=1e-6)


class BowlDiscriminator(torch.nn.Module):
    """A fixed discriminator whose 'prior sample' logit is high at the mode: 2 - |z|^2.

    One dummy parameter keeps Adam happy; lr_discriminator=0 keeps the bowl fixed, so only the
    generator step's direction is measured.
    """

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return 2.0 - z.pow(2).sum(dim=1) + 0.0 * self.dummy


@pytest.mark.parametrize("negative_code_loss", ["discriminator", "prior"])
def test_generator_step_pushes_a_negative_weight_code_out_of_the_prior(negative_code_loss: str) -> None:
    """Sec. 4.2: w < 0 must lower a candidate's likelihood (and D(z)); w = 1 raises them.

    The module's own training_step, with reconstruction and discriminator frozen (lr 0), so the
    generator step alone moves the encoder. Weighing the generator term twice (w^2 = 1) reverses it.
    """
    torch.manual_seed(0)
    module = AdversarialAutoencoderModule(
        input_dim=16,
        hidden=[24, 24],
        latent_dim=2,
        disc_hidden=[8, 8],
        lr_reconstruction=0.0,
        lr_discriminator=0.0,
        lr_generator=1e-2,
        betas_reconstruction=[0.9, 0.999],
        betas_adversarial=[0.5, 0.999],
        negative_code_loss=negative_code_loss,
        negative_prior_radius=3.0,
    )
    module.discriminator = BowlDiscriminator()
    images = toy_images_for_weights()
    dm = TensorDataModule(images, {"observed": images}, batch_size=len(images), seed=0)
    dm.setup()
    weights = torch.ones(len(images))
    weights[0] = -1.0
    dm.set_sample_weights(weights)

    def code_stats() -> tuple[torch.Tensor, torch.Tensor]:
        module.train()  # batch statistics, as in the training step: the full batch is the batch
        with torch.no_grad():
            z = module.encoder(images.x)
            return module.discriminator(z), standard_normal_log_likelihood(z)

    d_start, lik_start = code_stats()
    trainer(max_epochs=15).fit(module, datamodule=dm)
    d_end, lik_end = code_stats()
    assert lik_end[0] < lik_start[0] - 0.5, "the negative-weight code moved out of the prior's mass"
    assert d_end[0] < d_start[0], "the discriminator calls it less prior-like"
    assert lik_end[1:].mean() > lik_start[1:].mean(), "weight-1 codes move towards the mode"
    assert d_end[1:].mean() > d_start[1:].mean()


def toy_images_for_weights() -> LabelledImages:
    g = torch.Generator().manual_seed(3)
    x = torch.rand(32, 16, generator=g)
    flags = torch.zeros(32, dtype=torch.bool)
    return LabelledImages(x, flags.long(), flags)


def test_generator_loss_weighs_each_sample_once() -> None:
    logits = torch.tensor([0.3, -1.2, 2.0, 0.0])
    codes = torch.zeros(4, 2)
    w = torch.tensor([1.0, -1.0, 0.0, 0.5])
    per_sample = generator_loss_per_sample(logits, w)
    # -1 * BCE(D, code) would be negative; the term for w = -1 is |w| * BCE(D, code) >= 0
    assert per_sample[1] > 0 and per_sample[2] == 0
    assert generator_loss(logits, codes, w) == pytest.approx(float(per_sample.sum() / 3))


def retrain_negative_samples(defect: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A tiny AAE trained with all weights 1 (its discriminator learns the codes), then retrained with
    w = -1 on the 8 planted anomalies, the module's own training_step throughout; returns the mean
    reconstruction error of (negative, weight-1) samples, as the ratio end / start of retraining.

    defect="squared_weight": the double-weighting defect of old (each value weighed twice, so w = -1
    becomes +1) in the reconstruction step, to show that the assertions below catch it.
    """
    from itsr.models import aae as aae_module
    from itsr.models import base

    torch.manual_seed(0)
    module = tiny_aae()
    images = toy_images(120, 8)
    dm = TensorDataModule(images, {"observed": images}, batch_size=32, seed=0)
    dm.setup()
    trainer(max_epochs=30).fit(module, datamodule=dm)
    negative = images.is_anomaly

    def errors() -> tuple[torch.Tensor, torch.Tensor]:
        module.eval()
        with torch.no_grad():
            e = reconstruction_error(images.x, module.decoder(module.encoder(images.x)))
        return e[negative].mean(), e[~negative].mean()

    start = errors()
    weights = torch.ones(len(images))
    weights[negative] = -1.0
    dm.set_sample_weights(weights)
    original = aae_module.weighted_mean
    if defect == "squared_weight":
        aae_module.weighted_mean = lambda values, w: base.weighted_mean(w * values, w)
    try:
        trainer(max_epochs=60).fit(module, datamodule=dm)
    finally:
        aae_module.weighted_mean = original
    end = errors()
    return end[0] / start[0], end[1] / start[1]


@pytest.mark.slow
def test_retraining_with_a_trained_discriminator_raises_the_negative_samples_error() -> None:
    """Sec. 4.2's retraining: w < 0 must push a candidate's reconstruction error up, with every step of
    the AAE (a trained discriminator, its own generator step) running, while weight-1 samples stay learned.
    The double-weighting defect reverses the push: the same assertions fail on it."""
    negative, kept = retrain_negative_samples()
    assert negative > 2.0, f"the negative-weight samples' error rose only {negative:.2f}x"
    assert kept < 1.5, f"the weight-1 samples' error rose {kept:.2f}x"
    defect_negative, _ = retrain_negative_samples("squared_weight")
    assert defect_negative < 1.0 < negative, "the squared weight learns the candidates instead"


def train_discriminator_only(weight_of_candidates: float, signed: bool = False) -> dict:
    """Adam steps of a discriminator on fixed codes (candidates' codes off the mode) against prior samples,
    with discriminator_loss as the AAE's step 2 uses it; the candidates carry the given weight.
    signed=True: the defect of counting a code with its signed weight instead of max(w, 0)."""
    from itsr.models import base
    from itsr.nets import Discriminator

    torch.manual_seed(0)
    discriminator = Discriminator(2, [24, 24])
    codes = torch.randn(64, 2) * 0.5
    codes[:8] += torch.tensor([1.0, 1.0])  # the candidates: 8 codes one std off the bulk, inside the prior
    weights = torch.ones(64)
    weights[:8] = weight_of_candidates
    opt = torch.optim.Adam(discriminator.parameters(), lr=1e-2, betas=(0.5, 0.999))
    prior_draws = torch.Generator().manual_seed(1)
    for _ in range(150):
        prior = torch.randn(64, 2, generator=prior_draws)
        if signed:
            real = base.F.binary_cross_entropy_with_logits(discriminator(prior), torch.ones(64))
            fake = base.F.binary_cross_entropy_with_logits(discriminator(codes), torch.zeros(64), reduction="none")
            loss = real + base.weighted_mean(fake, weights)
        else:
            loss = base.discriminator_loss(discriminator(prior), discriminator(codes), weights)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        d_candidates = torch.sigmoid(discriminator(codes[:8])).mean()
    return {"state": {k: v.clone() for k, v in discriminator.state_dict().items()}, "d": float(d_candidates)}


def test_the_discriminator_counts_a_negative_weight_as_zero() -> None:
    """A candidate's code is never taught to the discriminator as a prior sample: w = -1 trains it exactly
    as w = 0 does (max(w, 0)) and unlike w = 1, which teaches it as a code; counting the signed weight
    instead (the defect this guards against) makes the discriminator call the candidates prior samples."""
    negative, removed, kept = (train_discriminator_only(w) for w in (-1.0, 0.0, 1.0))
    for name, tensor in removed["state"].items():
        assert torch.equal(negative["state"][name], tensor), f"discriminator.{name} differs between w = -1 and w = 0"
    assert kept["d"] < removed["d"] - 0.1, "weight 1 teaches the candidates' codes as codes"
    signed = train_discriminator_only(-1.0, signed=True)
    assert signed["d"] > removed["d"] + 0.1, f"signed weight: D(candidates) {signed['d']:.2f} vs {removed['d']:.2f}"


@pytest.fixture
def one_thread():
    """The GAN steps amplify rounding: fix the float order (one thread) for the test, then restore."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.mark.slow
def test_retraining_lowers_the_candidates_likelihood_with_code_batch_norm(one_thread) -> None:
    """Issue 22.3: does batch norm on the 2-D code undo the adversarial push (it re-centres the codes every
    batch)? On separable toy data, no: with the module's own steps, 30 epochs with weight 1 and 90 with
    w = -1 on the 8 planted anomalies, their mean log p(z) falls far below the normals' (measured
    2026-12-03 on AMD, seeds 0-2: -15..-4 -> -3090..-706 at 1 or 2 threads; normals stay between -4 and -2).
    Without code BN the push is *less* reliable (seeds 0-2 at 1 thread: -7.8 -> -8.7, -2.0 -> -21 with the
    normals dragged to -9.9, -6.8 -> -901), so that case is measured, not asserted. Code BN alone does not
    reverse the push: the rise seen at quick scale on MNIST with code BN is a property of those runs."""
    torch.manual_seed(0)
    module = tiny_aae()  # batch norm on the code is its default
    images = toy_images(120, 8)
    dm = TensorDataModule(images, {"observed": images}, batch_size=32, seed=0)
    dm.setup()
    trainer(max_epochs=30).fit(module, datamodule=dm)

    def likelihood() -> torch.Tensor:
        module.eval()
        with torch.no_grad():
            return standard_normal_log_likelihood(module.encoder(images.x))

    start = likelihood()
    weights = torch.ones(len(images))
    weights[images.is_anomaly] = -1.0
    dm.set_sample_weights(weights)
    trainer(max_epochs=90).fit(module, datamodule=dm)
    end = likelihood()
    candidates, normals = images.is_anomaly, ~images.is_anomaly
    assert end[candidates].mean() < start[candidates].mean() - 10, "the candidates' codes leave the prior's mass"
    assert end[normals].mean() > -10, "the normals' codes stay in it"
