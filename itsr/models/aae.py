"""The adversarial autoencoder (Sec. 3, 5) with manual optimization; ITSR trains this same module
while its refinement callback changes the sample weights (itsr.refinement)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from itsr.models.base import AnomalyModel, adam, check_finite, generator_loss_per_sample, weighted_mean
from itsr.nets import Decoder, Discriminator, Encoder
from itsr.scoring import reconstruction_error


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
    step 3 uses the signed weight (see generator_loss_per_sample).
    """

    has_likelihood = True

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
    ):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.encoder = Encoder(input_dim, hidden, latent_dim, batch_norm=True)
        self.decoder = Decoder(latent_dim, list(reversed(hidden)), input_dim)
        self.discriminator = Discriminator(latent_dim, disc_hidden)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        opt_rec, opt_disc, opt_gen = self.optimizers()
        x, w = batch["x"], batch["weight"]
        epoch = self.current_epoch

        with self.toggled_optimizer(opt_rec):
            z = self.encoder(x)
            rec_loss = weighted_mean(reconstruction_error(x, self.decoder(z)), w)
            check_finite(rec_loss, "reconstruction", epoch)
            opt_rec.zero_grad(set_to_none=True)
            self.manual_backward(rec_loss)
            opt_rec.step()

        with self.toggled_optimizer(opt_disc):
            codes = z.detach()
            prior = torch.randn_like(codes)
            logits_prior = self.discriminator(prior)
            logits_codes = self.discriminator(codes)
            disc_loss = F.binary_cross_entropy_with_logits(logits_prior, torch.ones_like(logits_prior)) + weighted_mean(
                F.binary_cross_entropy_with_logits(logits_codes, torch.zeros_like(logits_codes), reduction="none"),
                w.clamp(min=0),
            )
            check_finite(disc_loss, "discriminator", epoch)
            opt_disc.zero_grad(set_to_none=True)
            self.manual_backward(disc_loss)
            opt_disc.step()

        with self.toggled_optimizer(opt_gen):
            logits = self.discriminator(self.encoder(x))
            gen_loss = weighted_mean(generator_loss_per_sample(logits, w), w)
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
