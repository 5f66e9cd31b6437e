"""A bi-encoder over a transformers body: each text of a pair encoded alone, one head on the pair.

A cross-encoder reads a pair as one sequence, every token of one text attending to the other's.
A sentence-embedding model (all-MiniLM-L6-v2, all-mpnet-base-v2) was trained the other way: each
text alone, mean-pooled into one vector, the pair compared through those vectors (Reimers and
Gurevych, 2019). Fine-tuned as a cross-encoder it starts from nothing on the pair, and on STS-B
ends below what its untrained embeddings already give; fine-tuned as what it is, it starts there.

`BiEncoder` holds the classification model's body (its `base_model_prefix` attribute: `bert`,
`distilbert`, `transformer`, `model`) under the same name, so every module path a method or the
frozen-bottom cache knows (layers, attention projections) is unchanged, and a new head under the
name of the classification head it replaces (`classifier`, `score`), which the methods train and
save as they would that head:

- regression: the cosine of the two mean-pooled vectors, through a 1->1 linear layer that maps it
  to the target's scale (it starts at weight 1, then `liftkit.tasks.regression.head_start`);
- classification: `[u, v, |u - v|, u * v]` through a linear layer, as sentence-transformers' own
  classification objective.

A batch holds a pair's two texts as consecutive rows (`liftkit.batching`: a, b, a, b, ...), each
padded as any row is; the model returns one row of logits per pair, so the loss, evaluation,
predict, export (one ONNX graph that embeds and scores the pair) and serve see the pair as one
example.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from liftkit.errors import LiftError
from liftkit.modeling import Arch


class BiEncoder(nn.Module):
    """Two texts -> the shared body, mean pooling each -> one head on the pair's features."""

    texts_per_pair = 2  # batch rows per pair (what an ONNX export names its logits' rows by)

    def __init__(self, classifier: nn.Module, arch: Arch):
        super().__init__()
        self.config = classifier.config
        self.prefix = classifier.base_model_prefix
        body = getattr(classifier, self.prefix, None)
        if body is None:
            raise LiftError(
                f"this {arch.model_type} model keeps no body under {self.prefix!r}: use data.pair_encoding=cross"
            )
        if getattr(body, "pooler", None) is not None:  # BERT's [CLS] pooler: a bi-encoder mean-pools instead
            body.pooler = None
        setattr(self, self.prefix, body)
        self.head_name = arch.head[-1]
        hidden = self.config.hidden_size
        regression = self.config.problem_type == "regression"
        head = nn.Linear(1 if regression else 4 * hidden, self.config.num_labels)
        if regression:  # the cosine as it is: a pair the body finds similar starts high
            with torch.no_grad():
                head.weight.fill_(1.0)
                head.bias.zero_()
        setattr(self, self.head_name, head)
        self.regression = regression
        self.name_or_path = getattr(classifier, "name_or_path", "")

    @property
    def body(self) -> nn.Module:
        return getattr(self, self.prefix)

    def get_input_embeddings(self) -> nn.Module:  # peft's prompt methods embed the ids themselves
        return self.body.get_input_embeddings()

    def set_attn_implementation(self, implementation: str) -> None:  # liftkit's prefix attention
        self.body.set_attn_implementation(implementation)

    @property
    def device(self) -> torch.device:  # where peft's prompt methods put their virtual tokens
        return next(self.parameters()).device

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **kwargs: Any,
    ) -> SequenceClassifierOutput:
        """Rows 2i and 2i+1 of the batch are pair i's two texts; one row of logits per pair."""
        feed: dict[str, Any] = {"attention_mask": attention_mask}
        feed.update({"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds})
        if token_type_ids is not None:
            feed["token_type_ids"] = token_type_ids
        hidden = self.body(**feed, **kwargs)[0]  # peft's decoder prefixes come as past_key_values
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1e-9)
        u, v = pooled[0::2], pooled[1::2]
        if self.regression:
            features = F.cosine_similarity(u, v, dim=-1).unsqueeze(-1)
        else:
            features = torch.cat([u, v, (u - v).abs(), u * v], dim=-1)
        return SequenceClassifierOutput(logits=getattr(self, self.head_name)(features))


@torch.no_grad()
def start_head(model: BiEncoder, batches: Any, mean: float, std: float) -> None:
    """Start a regression head where a standardised one would: the cosines of the untrained body
    on `batches` (a sample of training pairs) mapped to the targets' mean and spread,
    score = mean + std * (cos - cos mean) / cos spread. Its 1->1 layer then starts on the target's
    scale instead of spending its first epochs learning it."""
    was_training = model.training
    model.eval()
    head = getattr(model, model.head_name)
    saved = head.weight.clone(), head.bias.clone()
    head.weight.fill_(1.0), head.bias.zero_()  # the raw cosine
    try:
        cosines = torch.cat([model(**{k: v for k, v in b.items() if k != "labels"}).logits[:, 0] for b in batches])
    finally:
        head.weight.copy_(saved[0]), head.bias.copy_(saved[1])
        model.train(was_training)
    spread = float(cosines.std()) if len(cosines) > 1 else 1.0
    scale = std / max(spread, 1e-6)
    head.weight.fill_(scale)
    head.bias.fill_(mean - scale * float(cosines.mean()))


def wrap(classifier: nn.Module, arch: Arch) -> BiEncoder:
    """`classifier` as a bi-encoder (its own head dropped, a pair head in its place)."""
    return BiEncoder(classifier, arch)


def is_sentence_encoder(source: str, revision: str | None = None) -> bool:
    """Whether a model folder or hub id is a sentence-transformers model, which
    `data.pair_encoding: auto` encodes as a bi-encoder: its modules.json says how it pools. A hub
    id is looked up in the local hub cache, then on the hub (offline and not cached: not known to
    be one, and the run log says which encoding was chosen)."""
    from pathlib import Path

    folder = Path(source)
    if folder.is_dir():
        return (folder / "modules.json").is_file()
    try:
        from huggingface_hub import file_exists, try_to_load_from_cache

        cached = try_to_load_from_cache(source, "modules.json", revision=revision)
        return isinstance(cached, str) or file_exists(source, "modules.json", revision=revision)
    except Exception:  # noqa: BLE001 - offline, a malformed id, no access: not known to be one
        return False
