"""The adversarial autoencoder (Sec. 3, 5) with manual optimization; ITSR trains this same module
while its refinement callback changes the sample weights (itsr.refinement)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from itsr.errors import OptionError, check_choice
from itsr.models.base import (
    NEGATIVE_CODE_LOSSES,
    AnomalyModel,
    adam,
    check_finite,
    discriminator_loss,
    drop_stale_casts,
    generator_loss,
    weighted_mean,
)
from itsr.models.registry import register_model
from itsr.nets import Decoder, Discriminator, Encoder
from itsr.scoring import reconstruction_error


@register_model
class AdversarialAutoencoderModule(AnomalyModel):
    """Encoder with batch norm -> 2-D code with a N(0, I) prior; discriminator on codes.

    Each batch runs three steps, each with its own Adam optimizer and its own toggle:
      1. reconstruction: encoder + decoder minimise the weighted pixelwise MSE;
      2. discriminator: prior samples (label 1) against the detached codes of step 1 (label 0);
      3. generator: the encoder makes the discriminator call its codes prior samples.
    Batch norm (our choice, the paper is silent): the encoder always runs in training mode and
    uses batch statistics. It runs in steps 1 and 3, so its running statistics are updated twice
    per batch; step 2 reuses step 1's codes and runs no encoder. Scoring uses eval mode.
    Sample weights: step 1 uses w_i as in L_w; step 2 counts a code with max(w_i, 0), so a negative
    retraining weight never teaches the discriminator that a candidate's code is a prior sample;
    step 3 uses the signed weight, once (see generator_loss): a negative weight pushes the code
    away from the prior's mass, by the discriminator (the paper's "same weight in the adversarial
    training", Sec. 4.2) or, with negative_code_loss="prior", by the prior likelihood directly.
    code_batch_norm: batch norm on the 2-D code layer too (Sec. 5, "after each layer in the encoder").
    """

    has_likelihood = True
    batch_refinement = True  # training_step weighs by batch_weights
    min_batch_size = 2  # batch norm in the encoder (Sec. 5) cannot train on a batch of one

    def __init__(
        self,
        input_dim: int,
        hidden: Sequence[int],
        latent_dim: int,
        disc_hidden: Sequence[int],
        lr_reconstruction: float,
        lr_discriminator: float,
        lr_generator: float,
        betas_reconstruction: Sequence[float],
        betas_adversarial: Sequence[float],
        code_batch_norm: bool = True,
        negative_code_loss: str = "discriminator",
        negative_prior_radius: float = 3.0,
    ):
        super().__init__()
        check_choice("negative_code_loss", negative_code_loss, NEGATIVE_CODE_LOSSES)
        if not negative_prior_radius > 0:
            raise OptionError("negative_prior_radius", "must be > 0", negative_prior_radius)
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.encoder = Encoder(input_dim, hidden, latent_dim, batch_norm=True, code_batch_norm=code_batch_norm)
        self.decoder = Decoder(latent_dim, list(reversed(hidden)), input_dim)
        self.discriminator = Discriminator(latent_dim, disc_hidden)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_rec, opt_disc, opt_gen = self.optimizers()
        hp = self.hparams
        x = batch["x"]
        epoch = self.current_epoch

        with self.toggled_optimizer(opt_rec):
            z = self.encoder(x)
            rec_error = reconstruction_error(x, self.decoder(z))
            w = self.batch_weights(rec_error, batch)  # refinement by="batch" drops its top errors from all 3 steps
            rec_loss = weighted_mean(rec_error, w)
            check_finite(rec_loss, "reconstruction", epoch)
            opt_rec.zero_grad(set_to_none=True)
            self.manual_backward(rec_loss)
            opt_rec.step()
            drop_stale_casts()

        with self.toggled_optimizer(opt_disc):
            codes = z.detach()
            prior = torch.randn_like(codes)
            disc_loss = discriminator_loss(self.discriminator(prior), self.discriminator(codes), w)
            check_finite(disc_loss, "discriminator", epoch)
            opt_disc.zero_grad(set_to_none=True)
            self.manual_backward(disc_loss)
            opt_disc.step()
            drop_stale_casts()

        with self.toggled_optimizer(opt_gen):
            z_gen = self.encoder(x)
            gen_loss = generator_loss(
                self.discriminator(z_gen), z_gen, w, hp.negative_code_loss, hp.negative_prior_radius
            )
            check_finite(gen_loss, "generator", epoch)
            opt_gen.zero_grad(set_to_none=True)
            self.manual_backward(gen_loss)
            opt_gen.step()

        self.accumulate_losses({"reconstruction": rec_loss, "discriminator": disc_loss, "generator": gen_loss})

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        hp = self.hparams
        autoencoder = [*self.encoder.parameters(), *self.decoder.parameters()]
        return [
            adam(autoencoder, hp.lr_reconstruction, hp.betas_reconstruction),
            adam(self.discriminator.parameters(), hp.lr_discriminator, hp.betas_adversarial),
            adam(self.encoder.parameters(), hp.lr_generator, hp.betas_adversarial),
        ]
