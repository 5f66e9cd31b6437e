"""The training loss: cross-entropy (class weights, label smoothing) or focal loss; for
multi-label tasks their sigmoid forms (binary cross-entropy per label, `pos_weight`).

HF's Trainer computes the model's own unweighted cross-entropy and has no class weights
(transformers#35061); on skewed data (tweet_eval_emoji: the top emoji has 20x the rows of the
rarest) that loss is best served by predicting the frequent classes, and macro-F1 suffers. Both
losses here take per-class weights: `balanced` weighs each class n_rows / (n_classes * its rows),
so every class carries the same total weight. Only training uses them; validation and test losses
stay the plain cross-entropy, comparable across runs.

Each task (`liftkit.tasks`) names the function here that builds its loss (`Task.criterion`).
For multi-label data `balanced` is per label: its positives weighed negatives / positives
(`pos_weight`), so a rare label's few positives count as much as its many negatives.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from liftkit.config import TrainConfig
from liftkit.errors import LiftError
from liftkit.tasks import Task

# (logits, labels[, row weights]) -> the loss: a mean over the rows, or, given row weights (a long
# document's windows share one document's weight, see liftkit.batching), their weighted mean
Criterion = Callable[..., torch.Tensor]


def weighted_mean(per_row: torch.Tensor, norm: torch.Tensor, rows: torch.Tensor | None) -> torch.Tensor:
    """sum(r * loss) / sum(r * norm) over a batch's rows: the mean torch's losses take (`norm`:
    each row's class weight where the loss has some, else 1), each row counted `rows` times."""
    if rows is None:
        return per_row.sum() / norm.sum()
    r = rows.to(per_row.device, per_row.dtype)
    return (r * per_row).sum() / (r * norm).sum()


def class_weights(
    spec: str | dict[str, float], label_names: Sequence[str], train_labels: Sequence[int]
) -> torch.Tensor | None:
    """`train.class_weights` as one weight per class (None: unweighted)."""
    if spec == "none":
        return None
    if spec == "balanced":
        counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=len(label_names)).astype(np.float64)
        # a class with no training row gets weight 0: nothing to weigh, and no division by zero
        weights = np.divide(len(train_labels), len(label_names) * counts, out=np.zeros_like(counts), where=counts > 0)
        return torch.tensor(weights, dtype=torch.float32)
    unknown = sorted(set(spec) - set(label_names))
    if unknown:
        raise LiftError(
            f"train.class_weights names {', '.join(map(repr, unknown))}, not among the labels ({', '.join(label_names)}): use the label names"
        )
    return torch.tensor([float(spec.get(name, 1.0)) for name in label_names], dtype=torch.float32)


def focal_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    gamma: float,
    weight: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss (Lin et al., 2017): -w_y (1 - p_y)^gamma log p_y, averaged as cross-entropy is
    (divided by the summed weights of the batch's rows). gamma 0 is weighted cross-entropy."""
    log_p = torch.log_softmax(logits.float(), dim=-1).gather(1, labels[:, None]).squeeze(1)
    # 1 - p, kept off 0: for 0 < gamma < 1 the gradient of x**gamma at x = 0 is infinite (NaN downstream)
    loss = -((-torch.expm1(log_p)).clamp_min(1e-12) ** gamma) * log_p
    w = weight.to(logits.device)[labels] if weight is not None else torch.ones_like(loss)
    return weighted_mean(w * loss, w, rows)


def criterion(cfg: TrainConfig, label_names: Sequence[str], train_targets: np.ndarray, task: Task) -> Criterion:
    """The loss `cfg` asks for in the form `task` needs, its weights resolved against the training targets."""
    check_loss(cfg, task)
    return globals()[task.criterion](cfg, label_names, train_targets)


def check_loss(cfg: TrainConfig, task: Task) -> None:
    """train.loss must be one the task trains with (cross-entropy means nothing for a score)."""
    if cfg.loss != "auto" and cfg.loss not in task.losses:
        raise LiftError(
            f"train.loss={cfg.loss!r} does not train a {task.name} model: use auto or one of {', '.join(task.losses)}"
        )


def single_label_criterion(cfg: TrainConfig, label_names: Sequence[str], train_labels: Sequence[int]) -> Criterion:
    """Cross-entropy or focal loss over the classes, with class weights."""
    weight = class_weights(cfg.class_weights, label_names, train_labels)
    if cfg.loss == "focal":
        return lambda logits, labels, rows=None: focal_loss(logits, labels, cfg.focal_gamma, weight, rows)
    smoothing = cfg.label_smoothing

    def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        w = weight.to(logits.device) if weight is not None else None
        per_row = F.cross_entropy(logits.float(), labels, weight=w, label_smoothing=smoothing, reduction="none")
        return weighted_mean(per_row, w[labels] if w is not None else torch.ones_like(per_row), rows)

    return cross_entropy


def pos_weights(
    spec: str | dict[str, float], label_names: Sequence[str], train_targets: np.ndarray
) -> torch.Tensor | None:
    """`train.class_weights` for multi-label data: each label's positive rows weighed against its
    negatives. `balanced`: negatives / positives (1 for a label with no positive row)."""
    if spec == "none":
        return None
    if spec == "balanced":
        positives = np.asarray(train_targets, dtype=np.float64).sum(axis=0)
        ratio = np.divide(len(train_targets) - positives, positives, out=np.ones_like(positives), where=positives > 0)
        return torch.tensor(ratio, dtype=torch.float32)
    return class_weights(spec, label_names, [])


def sigmoid_focal_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    gamma: float,
    pos_weight: torch.Tensor | None = None,
    rows: torch.Tensor | None = None,
) -> torch.Tensor:
    """Focal loss per label (Lin et al., 2017, binary form): each decision's cross-entropy times
    (1 - p_t)^gamma, its positive term times `pos_weight`; the mean over rows and labels."""
    x = logits.float()
    log_p, log_not_p = F.logsigmoid(x), F.logsigmoid(-x)
    positive = -targets * log_p * (-torch.expm1(log_p)).clamp_min(1e-12) ** gamma
    negative = -(1 - targets) * log_not_p * (-torch.expm1(log_not_p)).clamp_min(1e-12) ** gamma
    if pos_weight is not None:
        positive = positive * pos_weight.to(x.device)
    per_row = (positive + negative).mean(dim=1)
    return weighted_mean(per_row, torch.ones_like(per_row), rows)


def multi_label_criterion(cfg: TrainConfig, label_names: Sequence[str], train_targets: np.ndarray) -> Criterion:
    """Binary cross-entropy with logits over every label (or its focal form), `pos_weight` from
    train.class_weights; label smoothing pulls each 0/1 target that share towards 0.5."""
    weight = pos_weights(cfg.class_weights, label_names, train_targets)
    if cfg.loss == "focal":
        return lambda logits, targets, rows=None: sigmoid_focal_loss(logits, targets, cfg.focal_gamma, weight, rows)
    smoothing = cfg.label_smoothing

    def binary_cross_entropy(
        logits: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        w = weight.to(logits.device) if weight is not None else None
        soft = targets * (1 - smoothing) + smoothing / 2
        per_row = F.binary_cross_entropy_with_logits(logits.float(), soft, pos_weight=w, reduction="none").mean(dim=1)
        return weighted_mean(per_row, torch.ones_like(per_row), rows)

    return binary_cross_entropy


def regression_criterion(cfg: TrainConfig, label_names: Sequence[str], train_targets: np.ndarray) -> Criterion:
    """Mean squared error (or Huber, train.loss: huber) of standardised scores: the error divided
    by the training targets' standard deviation, so the gradient's scale, and the learning rate
    that suits it, do not depend on the target's units. Huber's bend sits at one standard
    deviation. The value returned is that loss times the variance, in the target's own units
    (the MSE itself for mse), so the logged training loss and the validation MSE share an axis;
    the gradient is the standardised loss's."""
    for name, plain in (("class_weights", "none"), ("label_smoothing", 0.0)):
        if getattr(cfg, name) != plain:
            raise LiftError(f"train.{name} applies to classes, and a regression target has none: set it to {plain}")
    scale = float(max(np.std(np.asarray(train_targets, dtype=np.float64)), 1e-6))
    huber = cfg.loss == "huber"

    def standardised(outputs: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor | None = None) -> torch.Tensor:
        predicted, wanted = outputs.float().reshape(-1) / scale, targets.float().reshape(-1) / scale
        each = F.huber_loss if huber else F.mse_loss
        per_row = each(predicted, wanted, reduction="none", **({"delta": 1.0} if huber else {}))
        loss = weighted_mean(per_row, torch.ones_like(per_row), rows)
        return loss + loss.detach() * (scale**2 - 1)  # reported in the target's units, standardised gradient

    return standardised
