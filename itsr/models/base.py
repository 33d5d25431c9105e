"""What every anomaly model shares: encode, decode, score, and the weighted losses."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from itsr.detector import LIKELIHOOD_SCORE, REC_SCORE, ThresholdDetector
from itsr.scoring import reconstruction_error, standard_normal_log_likelihood


class NonFiniteLossError(FloatingPointError):
    """A loss became NaN or infinite; training stops and keeps its last good checkpoint."""


def mean_over_counted(weighted_values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_i v_i over the samples that count (w_i != 0), divided by their number.

    The values must already carry their weights (as generator_loss_per_sample's do); this only
    normalises. Dividing by the number of weighted samples (not the batch size) makes a weight of
    0 remove a sample exactly: the loss and its gradient equal those of the batch without it.
    """
    return weighted_values.sum() / (weights != 0).sum().clamp(min=1)


def drop_top_of_batch(losses: torch.Tensor, weights: torch.Tensor, fraction: float) -> torch.Tensor:
    """Latent Outlier Exposure, hard (Qiu et al., ICML 2022): the round(fraction * n) samples of the batch
    with the highest loss, among the n that count (w > 0), get weight 0 for this step. `losses` are the
    per-sample losses the ranking uses (detached); returns the new weights."""
    counted = weights > 0
    n_drop = int(round(fraction * int(counted.sum())))
    if n_drop == 0:
        return weights
    ranked = torch.where(counted, losses.detach().float(), torch.tensor(float("-inf"), device=losses.device))
    dropped = torch.zeros_like(counted)
    dropped[torch.topk(ranked, n_drop).indices] = True
    return torch.where(dropped, torch.zeros_like(weights), weights)


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The paper's L_w = sum_i w_i L_i (Sec. 4.2), scaled per batch: each value weighed once."""
    return mean_over_counted(weights * values, weights)


def generator_loss_per_sample(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Encoder's adversarial loss per sample, already carrying the sample's weight (Sec. 4.2).

    w >= 0: w * BCE(D(z), prior), the usual non-saturating "fool the discriminator" term.
    w < 0: |w| * BCE(D(z), code), pushing a retraining candidate's code towards where the
    discriminator says "not a prior sample". Writing the negative case as a positive loss towards
    the other label keeps it bounded below; -w * BCE(D(z), prior) would diverge to minus infinity.
    Normalise with mean_over_counted, never weighted_mean: weighing twice squares w and turns
    w = -1 back into -BCE(D(z), code), whose gradient pulls the code *into* the prior's mass.

    What the discriminator can know: it is trained on prior samples against the codes of weight
    > 0 (see AdversarialAutoencoderModule), so D(z) is low where the retained codes are denser
    than the prior, and unconstrained where neither has mass. "D low" is therefore not the same as
    "low prior density". Measured (quick preset, alpha 5%, 9 of 9 runs on three settings): the
    trained D is about 0.45 inside the bulk of the codes and rises towards 0.95 outside it, so this
    term drives the negative-weight codes *into* the bulk; their mean log p(z) rose from -4.5..-7.8
    to -2.0..-4.0 during retraining (mode -1.84) while their reconstruction error rose 3-6x
    (results/quick/README.md, scripts/discriminator_map.py). At the paper's 500-1000 retraining epochs
    it rose the same way in 10 of 11 runs (9 bf16, and an fp32 rerun of one of them) and fell, from -5.2
    to -23.0, in one fp32 run (results/paper/README.md, results/paper/precision/): neither long training
    nor fp32 reliably pushes the codes out of the bulk. The likelihood term (negative_code_loss="prior")
    pushes on log p(z) directly instead.
    """
    toward_prior = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    away_from_prior = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return torch.where(weights >= 0, weights * toward_prior, -weights * away_from_prior)


NEGATIVE_CODE_LOSSES = ("discriminator", "prior")


def prior_push_per_sample(codes: torch.Tensor, weights: torch.Tensor, radius: float) -> torch.Tensor:
    """|w| * max(0, log p(z) - log p(z_r)) for w < 0, else 0: a direct push on the prior likelihood.

    z_r is any code at distance `radius` from the mode of N(0, I); log p(z) - log p(z_r) =
    (radius^2 - |z|^2) / 2, so the term pulls a negative-weight code straight out of the prior's
    mass until it lies `radius` standard deviations out, and is bounded below (unlike -log p(z)).
    """
    inside = (radius**2 - codes.pow(2).sum(dim=1)).clamp(min=0) / 2
    return torch.where(weights < 0, -weights * inside, torch.zeros_like(inside))


def discriminator_loss(logits_prior: torch.Tensor, logits_codes: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Prior samples (label 1) against the codes (label 0), a code counted with max(w, 0).

    A negative retraining weight never teaches the discriminator that a candidate's code is a
    prior sample; a weight of 0 leaves the code out.
    """
    real = F.binary_cross_entropy_with_logits(logits_prior, torch.ones_like(logits_prior))
    fake = F.binary_cross_entropy_with_logits(logits_codes, torch.zeros_like(logits_codes), reduction="none")
    return real + weighted_mean(fake, weights.clamp(min=0))


def generator_loss(
    logits: torch.Tensor,
    codes: torch.Tensor,
    weights: torch.Tensor,
    negative_code_loss: str = "discriminator",
    negative_prior_radius: float = 3.0,
) -> torch.Tensor:
    """The encoder's adversarial loss for a batch, each sample's term weighed exactly once.

    negative_code_loss="discriminator": the paper's reading, the same weight in the adversarial
    part (Sec. 4.2); "prior": w >= 0 as before, w < 0 by prior_push_per_sample instead.
    """
    if negative_code_loss == "discriminator":
        per_sample = generator_loss_per_sample(logits, weights)
    elif negative_code_loss == "prior":
        per_sample = torch.where(
            weights < 0,
            prior_push_per_sample(codes, weights, negative_prior_radius),
            generator_loss_per_sample(logits, weights.clamp(min=0)),
        )
    else:
        raise ValueError(
            f"model.module.negative_code_loss must be one of {NEGATIVE_CODE_LOSSES}, got {negative_code_loss!r}"
        )
    return mean_over_counted(per_sample, weights)


def adam(params, lr: float, betas) -> torch.optim.Adam:
    """Adam with the fused kernel: one pass over each parameter instead of a chain of elementwise ops.

    Measured on 2 CPU cores (torch 2.13), it cut the AE's epoch from 1.11 s to 0.69 s; the unfused
    update took over half of the epoch. Same update rule, equal results up to float rounding.
    """
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), fused=True)


def drop_stale_casts() -> None:
    """Forget autocast's bf16 copies of the weights after an optimizer step inside the same step.

    Under bf16-mixed, autocast caches the bf16 cast of each weight until its context exits, and
    Lightning opens one context for the whole training step. The AAE steps three optimizers in it,
    so without this the generator step would run the encoder with the weights from before the
    reconstruction step's update (measured: the cached cast is returned unchanged after an in-place
    update). Outside autocast the cache is empty and this does nothing: fp32 is unchanged.
    """
    torch.clear_autocast_cache()


def check_finite(loss: torch.Tensor, step: str, epoch: int) -> None:
    if not bool(torch.isfinite(loss)):
        raise NonFiniteLossError(
            f"the {step} loss became {float(loss.detach())} at epoch {epoch}; training stopped, the last "
            "checkpoint in the run directory is the last good state. Lower the learning rates "
            "(model.optim.*) or check the input data for NaNs."
        )


class AnomalyModel(pl.LightningModule):
    """Encoder + decoder; subclasses add training. has_likelihood: the code has a prior."""

    has_likelihood = False
    min_batch_size = 1  # the smallest training batch the module can learn from
    # refinement by="batch" (itsr.refinement): the fraction of every batch dropped by its reconstruction
    # error in this epoch (0: none); the dropped samples' dataset indices are kept for the diagnostics
    batch_drop_fraction = 0.0
    batch_refinement = False  # True where training_step takes its weights from batch_weights (AE, AAE)

    def batch_weights(self, rec_error: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The batch's sample weights, with the top batch_drop_fraction by reconstruction error set to 0."""
        weights = batch["weight"]
        if self.batch_drop_fraction <= 0.0:
            return weights
        new = drop_top_of_batch(rec_error, weights, self.batch_drop_fraction)
        # kept on the device, masked at epoch end: no host sync per step on a GPU
        self.__dict__.setdefault("_batch_dropped", []).append((batch["index"], (new == 0) & (weights != 0)))
        return new

    def take_batch_dropped(self) -> torch.Tensor:
        """The dataset indices dropped since the last call (each batch's top fraction), and forget them."""
        parts = self.__dict__.pop("_batch_dropped", [])
        if not parts:
            return torch.zeros(0, dtype=torch.long)
        index = torch.cat([i for i, _ in parts])
        return index[torch.cat([m for _, m in parts])].cpu()

    def accumulate_losses(self, losses: dict[str, torch.Tensor]) -> None:
        """Sum the step losses on the device; they are logged once per epoch. Calling self.log on
        every step cost about 0.6 ms per step on the CPU, 4% of an AE epoch."""
        sums = self.__dict__.setdefault("_loss_sums", {})
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + value.detach()
        self._loss_steps = getattr(self, "_loss_steps", 0) + 1

    def on_train_epoch_end(self) -> None:
        sums = self.__dict__.pop("_loss_sums", {})
        steps = getattr(self, "_loss_steps", 0)
        self._loss_steps = 0
        if steps:
            self.log_dict({f"loss/{name}": total / steps for name, total in sums.items()})

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The prior samples of the discriminator step come from torch's global generator; saving
        # its state makes a resumed run draw the same samples as an uninterrupted one.
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        if torch.cuda.is_available():  # on a GPU the prior samples come from the CUDA generator
            checkpoint["cuda_rng_states"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
        if "cuda_rng_states" in checkpoint and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(checkpoint["cuda_rng_states"])

    def compile_networks(self, **options) -> None:
        """Opt-in torch.compile of the networks, in place, so state_dict keys and checkpoints stay
        the same. A GPU option: on 2 CPU cores it gave no gain, and it recompiles when the grad mode
        changes (training vs scoring)."""
        for name in ("encoder", "decoder", "discriminator"):
            network = getattr(self, name, None)
            if network is not None:
                network.compile(**options)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))

    @torch.no_grad()
    def score(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """Per-sample rec_error, code and (with a prior) log_likelihood, in eval mode, on CPU.

        Eval mode makes batch norm use its running statistics, so a sample's score does not depend
        on the batch it is scored with.
        """
        was_training = self.training
        self.eval()
        parts: dict[str, list[torch.Tensor]] = {"rec_error": [], "code": []}
        if self.has_likelihood:
            parts["log_likelihood"] = []
        try:
            for chunk in torch.split(x, batch_size):
                chunk = chunk.to(self.device, non_blocking=True)
                z = self.encoder(chunk)
                parts["rec_error"].append(reconstruction_error(chunk.flatten(1), self.decoder(z)).cpu())
                parts["code"].append(z.cpu())
                if self.has_likelihood:
                    parts["log_likelihood"].append(standard_normal_log_likelihood(z).cpu())
        finally:
            self.train(was_training)
        return {k: torch.cat(v) for k, v in parts.items()}

    def training_scores(self, x: torch.Tensor, batch_size: int) -> dict[str, torch.Tensor]:
        """The training set scored as any image (itsr.interface.ScoringModel)."""
        return self.score(x, batch_size)

    def fit_threshold_detector(
        self,
        scores: dict[str, torch.Tensor],
        rec_percentile: float,
        lik_percentile: float,
        mask: torch.Tensor | None = None,
        training: bool = True,
    ) -> ThresholdDetector:
        """T_rec from the reconstruction errors, T_prior (with a prior) from the log-likelihoods (of the
        training set or of the held-out slice alike)."""
        return ThresholdDetector.fit(
            scores[REC_SCORE], scores.get(LIKELIHOOD_SCORE), rec_percentile, lik_percentile, mask=mask
        )
