"""Surrogate maps (surrogate family): a linear model fitted to the classifier's response when
superpixels are hidden, one coefficient per superpixel.

The image is cut into superpixels by SLIC (Achanta et al. 2012, scikit-image's `slic`: about
`n_segments` regions, `compactness` trading colour for shape). A sample is a binary vector z over
the segments; its image keeps the segments where z = 1 and takes the baseline fill elsewhere,
and its response is the target's logit. Every sample image goes through the pass module in
batched chunks. Then:

- LIME (Ribeiro, Singh, Guestrin 2016, "Why should I trust you?"): z uniform over {0, 1}^M,
  the first sample all ones; a ridge regression (with an unpenalised intercept) weighted by
  LIME's image kernel `π(z) = exp(−d(z)² / (2σ²))`, `d` the cosine distance of z to all ones,
  σ = `kernel_width` (lime_image's √exp(−d²/σ²), σ = 0.25).
- Kernel SHAP (Lundberg & Lee 2017, "A unified approach to interpreting model predictions"):
  the all-ones and all-zeros samples, then coalitions whose size k is drawn with probability
  ∝ (M − 1) / (k (M − k)) and whose members are uniform: the Shapley kernel as a sampling
  distribution, so every sample weighs the same. A least-squares fit under the efficiency
  constraint `Σ φ_j = f(x) − f(baseline)`, which holds exactly (minimum-norm where the samples
  do not determine φ).

The map gives each pixel its segment's coefficient (signed). Both are exact on a model that is
linear in z. Samples are drawn on the CPU from `seed`, the same for every image of a batch.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from engines.core import passes
from engines.core.explain import Context
from engines.core.fills import FILLS, fill_image
from engines.core.registry import Param, Peer, Stage, register

SEGMENT_PARAMS = (
    Param("n_segments", 50, "int", "About how many superpixels SLIC cuts the image into.", low=1, high=1000),
    Param("compactness", 10.0, "float", "SLIC's balance of colour against position: higher gives squarer "
          "superpixels.", low=0.001, high=1000.0),
)
SAMPLES = Param("samples", 500, "int", "Images with superpixels hidden, the first one the whole image. "
                "One forward pass each.", low=2, high=20000)
SEED = Param("seed", 0, "int", "Random seed of the samples.", low=0, high=2**31 - 1, optional=True,
             none_means="fresh randomness")
BASELINE = Param("baseline", "mean", "choice", "What hidden superpixels become (the image's mean colour by "
                 "default).", choices=FILLS)


def superpixels(x: torch.Tensor, n_segments: int, compactness: float) -> torch.Tensor:
    """SLIC superpixels of each image `(N, C, H, W)` in [0, 1]: labels `(N, H, W)` long, numbered
    0 … M_n − 1 for image n (scikit-image's `slic`, Achanta et al. 2012)."""
    from skimage.segmentation import slic

    labels = []
    for image in x.detach().cpu().permute(0, 2, 3, 1).double().numpy():  # (H, W, C) each
        found = slic(image, n_segments=n_segments, compactness=compactness, start_label=0,
                     channel_axis=-1 if image.shape[-1] > 1 else None)
        _, dense = np.unique(found, return_inverse=True)  # numbered 0 … M − 1 without gaps
        labels.append(torch.from_numpy(dense.reshape(found.shape).astype(np.int64)))
    return torch.stack(labels)


def _generator(seed: Optional[int]) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
    return generator


def lime_samples(segments: int, samples: int, seed: Optional[int]) -> torch.Tensor:
    """LIME's samples `(samples, M)` in {0, 1}: all ones first, then uniform binary vectors."""
    z = torch.randint(0, 2, (samples, segments), generator=_generator(seed)).bool()
    z[0] = True
    return z


def shapley_size_probabilities(segments: int) -> torch.Tensor:
    """`p(k) ∝ (M − 1) / (k (M − k))` for coalition sizes k = 1 … M − 1 (the Shapley kernel summed
    over the C(M, k) coalitions of each size), `(M − 1,)` float64."""
    k = torch.arange(1, segments, dtype=torch.float64)
    weights = (segments - 1) / (k * (segments - k))
    return weights / weights.sum()


def kernel_shap_samples(segments: int, samples: int, seed: Optional[int]) -> torch.Tensor:
    """Kernel SHAP's samples `(samples, M)`: all ones, all zeros, then coalitions of a size drawn
    from `shapley_size_probabilities` with uniformly chosen members (Captum's sampler)."""
    generator = _generator(seed)
    z = torch.zeros((samples, segments), dtype=torch.bool)
    z[0] = True
    if segments < 2:
        return z
    sizes = torch.multinomial(shapley_size_probabilities(segments), max(samples - 2, 1), replacement=True,
                              generator=generator) + 1
    for row in range(2, samples):
        members = torch.randn(segments, generator=generator).topk(int(sizes[row - 2])).indices
        z[row, members] = True
    return z


def lime_kernel(z: torch.Tensor, kernel_width: float) -> torch.Tensor:
    """LIME's weight of each sample `(S,)`: `exp(−d² / (2σ²))`, d = cosine distance of z to all
    ones (1 for the empty sample)."""
    ones = z.double().sum(1)
    distance = 1 - torch.sqrt(ones / z.shape[1])
    return torch.exp(-distance.pow(2) / (2 * kernel_width**2))


def weighted_ridge(z: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, alpha: float) -> torch.Tensor:
    """The coefficients `(M,)` minimising `Σ_s w_s (y_s − b − z_s·β)² + α ‖β‖²` (intercept b not
    penalised), as scikit-learn's `Ridge` with sample weights; minimum norm where not unique."""
    z, y, w = z.double(), y.double(), weights.double()
    mean_z = (w[:, None] * z).sum(0) / w.sum()
    mean_y = (w * y).sum() / w.sum()
    root = w.sqrt()[:, None]
    design = root * (z - mean_z)  # (S, M)
    response = root[:, 0] * (y - mean_y)
    if alpha > 0:
        design = torch.cat([design, (alpha**0.5) * torch.eye(z.shape[1], dtype=torch.float64)])
        response = torch.cat([response, torch.zeros(z.shape[1], dtype=torch.float64)])
    return torch.linalg.lstsq(design, response[:, None], driver="gelsd").solution[:, 0]


def efficient_least_squares(z: torch.Tensor, y: torch.Tensor, full: float, empty: float) -> torch.Tensor:
    """φ `(M,)` minimising `Σ_s (y_s − empty − z_s·φ)²` subject to `Σ φ = full − empty` exactly:
    φ = (full − empty)/M · 1 + N u over a basis N of the vectors summing to zero, u of minimum norm."""
    segments = z.shape[1]
    even = torch.full((segments,), (full - empty) / segments, dtype=torch.float64)
    if segments == 1 or len(z) == 0:
        return even
    basis, _ = torch.linalg.qr(torch.cat([torch.ones(segments, 1, dtype=torch.float64),
                                          torch.eye(segments, dtype=torch.float64)[:, : segments - 1]], 1))
    null = basis[:, 1:]  # (M, M − 1), orthonormal, each column summing to zero
    design = z.double() @ null
    response = y.double() - empty - z.double() @ even
    u = torch.linalg.lstsq(design, response[:, None], driver="gelsd").solution[:, 0]
    return even + null @ u


def _responses(ctx: Context, labels: torch.Tensor, samples: list[torch.Tensor], baseline: str) -> torch.Tensor:
    """Target logits `(S, N)` of every sample image; sample 0 (all ones) is the clean image, whose
    logits become the explanation's. `samples[n]` is image n's `(S, M_n)` boolean matrix."""
    x = ctx.x
    fill = fill_image(x, baseline)
    labels = labels.to(x.device)

    def points(start: int, stop: int) -> torch.Tensor:  # (m, N, C, H, W)
        keep = torch.stack([z[start:stop].to(x.device)[:, labels[n]] for n, z in enumerate(samples)], 1)  # (m, N, H, W)
        return torch.where(keep[:, :, None], x[None], fill[None])

    logits = passes.forward_points(ctx.model, points, len(samples[0]), tuple(x.shape), progress=ctx.progress)
    ctx.use_logits(logits[0])  # (S, N, K); copy 0 keeps every pixel of x
    target = ctx.target.to(logits.device)
    return logits[:, torch.arange(len(x), device=logits.device), target].double().cpu()  # (S, N)


def _paint(labels: torch.Tensor, coefficients: list[torch.Tensor]) -> torch.Tensor:
    """Each pixel gets its segment's coefficient: `(N, H, W)` float32."""
    return torch.stack([c.float()[l] for c, l in zip(coefficients, labels)])


# --------------------------------------------------------------------------- peers (Captum)


def _captum_surrogate(kind: str):
    """Captum's `Lime` or `KernelShap` given our superpixels as its feature mask and fed our
    samples in order (its `perturb_func`), with LIME's kernel and ridge for `Lime`: the same
    regression on the same data."""

    def build(model, x, target, settings, knob):
        from captum.attr import KernelShap, Lime
        from captum._utils.models.linear_model import SkLearnRidge

        labels = superpixels(x, settings["n_segments"], settings["compactness"])
        fill = fill_image(x, settings["baseline"])
        targets = torch.as_tensor(target).reshape(-1).expand(len(x))
        draw = lime_samples if kind == "lime" else kernel_shap_samples

        def one(n: int) -> torch.Tensor:
            segments = int(labels[n].max()) + 1
            z = draw(segments, settings["samples"], settings["seed"])

            def feed(_original, **_kwargs):
                for row in z:
                    yield row[None].long()

            if kind == "lime":
                width = settings["kernel_width"]
                explainer = Lime(model, interpretable_model=SkLearnRidge(alpha=settings["ridge"]),
                                 similarity_func=lambda _o, _p, sample, **_k: lime_kernel(sample.bool(), width).float(),
                                 perturb_func=feed)
            else:
                explainer = KernelShap(model)
                explainer.perturb_func = feed
            return explainer.attribute(x[n : n + 1], baselines=fill[n : n + 1], target=int(targets[n]),
                                       feature_mask=labels[n][None, None].to(x.device), n_samples=settings["samples"],
                                       perturbations_per_eval=knob or 1)[0, 0]

        return lambda: torch.stack([one(n) for n in range(len(x))])

    return build


def _peer(kind: str, label: str) -> Peer:
    return Peer("captum", label, _captum_surrogate(kind), lambda output, settings: output.float(),
                knob="perturbations_per_eval", default=1,
                candidates=lambda s: [2**i for i in range(7) if 2**i <= s["samples"]])


# --------------------------------------------------------------------------- the methods


@register(
    "lime",
    label="LIME",
    family="surrogate",
    signed=True,
    summary="A weighted linear fit of the class score to which superpixels are shown: each one's coefficient.",
    reference="Ribeiro, Singh, Guestrin 2016",
    params=(
        *SEGMENT_PARAMS, SAMPLES, BASELINE,
        Param("kernel_width", 0.25, "float", "Width σ of the kernel on the cosine distance to the whole image "
              "(lime_image's 0.25).", low=0.01, high=100.0),
        Param("ridge", 1.0, "float", "Ridge penalty α on the coefficients (0: plain weighted least squares).",
              low=0.0, high=1e6),
        SEED,
    ),
    plan=lambda s, k, hw: [Stage("forward", s["samples"])],  # sample 0 is the clean image
    quick=lambda size: {"samples": 16, "n_segments": 16},
    peers=(_peer("lime", "Captum Lime (our kernel, ridge and samples)"),),
)
def lime(ctx: Context, n_segments: int, compactness: float, samples: int, baseline: str, kernel_width: float,
         ridge: float, seed: Optional[int]) -> tuple:
    """LIME's coefficients painted onto the superpixels: a ridge fit of the target logit to z,
    weighted by `exp(−d(z)²/(2σ²))`."""
    labels = superpixels(ctx.x, n_segments, compactness)
    draws = [lime_samples(int(l.max()) + 1, samples, seed) for l in labels]
    y = _responses(ctx, labels, draws, baseline)  # (S, N)
    coefficients = [weighted_ridge(z, y[:, n], lime_kernel(z, kernel_width), ridge) for n, z in enumerate(draws)]
    return None, _paint(labels, coefficients).to(ctx.device), True


@register(
    "kernel_shap",
    label="Kernel SHAP",
    family="surrogate",
    signed=True,
    summary="Shapley values of the superpixels, estimated by a kernel-weighted linear fit: they add up to "
            "the score's change from the baseline.",
    reference="Lundberg & Lee 2017",
    params=(*SEGMENT_PARAMS, SAMPLES, BASELINE, SEED),
    plan=lambda s, k, hw: [Stage("forward", s["samples"])],  # sample 0 is the clean image
    quick=lambda size: {"samples": 16, "n_segments": 16},
    peers=(_peer("kernel_shap", "Captum KernelShap (our samples)"),),
)
def kernel_shap(ctx: Context, n_segments: int, compactness: float, samples: int, baseline: str,
                seed: Optional[int]) -> tuple:
    """Kernel SHAP's φ painted onto the superpixels; `Σ_j φ_j = s_c(x) − s_c(baseline)` exactly."""
    labels = superpixels(ctx.x, n_segments, compactness)
    draws = [kernel_shap_samples(int(l.max()) + 1, samples, seed) for l in labels]
    y = _responses(ctx, labels, draws, baseline)  # (S, N)
    # Rows 0 and 1 (all ones, all zeros) give f(x) and f(baseline): the constraint, not data.
    phis = [efficient_least_squares(z[2:], y[2:, n], float(y[0, n]), float(y[1, n])) for n, z in enumerate(draws)]
    return None, _paint(labels, phis).to(ctx.device), True
