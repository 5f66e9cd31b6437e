import numpy as np
import torch

from liftkit.batching import LengthBucketSampler, PadCollator, Padding, tokenize
from liftkit.config import DataConfig, ModelConfig
from liftkit.data import load_splits
from liftkit.modeling import load_tokenizer


def test_bucketed_batches_cover_every_row_once_and_pad_far_less_than_random():
    lengths = np.random.default_rng(0).integers(5, 80, size=1000)
    sampler = LengthBucketSampler(lengths, 16, shuffle=True, seed=3)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(1000))
    padded = sum(len(b) * lengths[b].max() for b in batches)
    random_order = np.random.default_rng(1).permutation(1000)
    random_padded = sum(16 * lengths[random_order[i : i + 16]].max() for i in range(0, 1000, 16))
    assert padded < 0.6 * random_padded


def test_bucketed_order_is_reproducible_per_epoch_and_changes_between_epochs():
    lengths = np.arange(200) % 37
    a, b = LengthBucketSampler(lengths, 8, True, seed=0), LengthBucketSampler(lengths, 8, True, seed=0)
    assert list(a) == list(b)
    first = list(a)
    a.set_epoch(1)
    assert list(a) != first


def test_eval_order_is_longest_first_and_deterministic():
    lengths = np.array([3, 9, 1, 7])
    assert list(LengthBucketSampler(lengths, 2, shuffle=False)) == [[1, 3], [0, 2]]


def test_collator_pads_to_the_batch_max_only():
    rows = [
        {"input_ids": np.array([5, 6, 7]), "token_type_ids": np.array([0, 0, 1]), "labels": np.int64(1)},
        {"input_ids": np.array([8]), "token_type_ids": np.array([0]), "labels": np.int64(0)},
    ]
    batch = PadCollator(pad_id=9)(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7], [8, 9, 9]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]  # every input the model takes travels
    assert batch["labels"].tolist() == [1, 0] and batch["labels"].dtype == torch.long
    multi = PadCollator(pad_id=0, left=True)(
        [
            {"input_ids": np.array([5, 6]), "labels": np.array([1, 0, 1], dtype=np.float32)},
            {"input_ids": np.array([8]), "labels": np.array([0, 0, 0], dtype=np.float32)},
        ]
    )
    assert multi["input_ids"].tolist() == [[5, 6], [0, 8]] and multi["labels"].tolist() == [[1, 0, 1], [0, 0, 0]]


def test_tokenization_is_cached_and_identical(tmp_path, monkeypatch):
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path))
    split = load_splits(DataConfig(dataset="emotion", max_train_samples=50)).train
    tok = load_tokenizer(ModelConfig())
    first = tokenize(split, tok, 32)
    assert len(list((tmp_path / "tokens").glob("*.npz"))) == 1
    second = tokenize(split, tok, 32)
    assert all(np.array_equal(x, y) for x, y in zip(first.ids, second.ids))
    assert first.ids[0].tolist() == tok(split.texts[0])["input_ids"]
    assert (
        list(first.extra) == ["token_type_ids"]
        and first.extra["token_type_ids"][0].tolist() == tok(split.texts[0])["token_type_ids"]
    )
    assert max(first.lengths) <= 32
    tokenize(split, tok, 16)  # another max_length is another cache entry
    assert len(list((tmp_path / "tokens").glob("*.npz"))) == 2


def test_bucketed_per_batch_padding_changes_no_logit(tiny_models):
    from liftkit.batching import loader
    from liftkit.evaluate import predict_logits
    from liftkit.modeling import load_classifier

    cfg = ModelConfig(name=str(tiny_models["bert"]))
    tok = load_tokenizer(cfg)
    model = load_classifier(cfg, ["a", "b", "c", "d", "e", "f"], tok).eval()
    split = load_splits(DataConfig(dataset="emotion", max_train_samples=40)).train
    logits, labels = predict_logits(
        model, loader(tokenize(split, tok, 48), 8, Padding.of(tok), shuffle=False), torch.device("cpu")
    )
    padded = tok(split.texts, padding="max_length", truncation=True, max_length=48, return_tensors="pt")
    with torch.no_grad():  # what a plain loop computes: every row padded to max_length, dataset order
        reference = model(**padded).logits.numpy()
    np.testing.assert_allclose(logits, reference, atol=1e-5)
    assert labels.tolist() == list(split.labels)


def test_auto_max_length_keeps_99_percent_of_texts_whole_and_obeys_the_model(tmp_path, monkeypatch):
    from liftkit.batching import auto_max_length

    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path))
    split = load_splits(DataConfig(dataset="imdb", max_train_samples=200)).train
    tok = load_tokenizer(ModelConfig())
    whole = np.array([len(ids) for ids in tok(split.texts)["input_ids"]])
    chosen = auto_max_length(split, tok, 4096)
    assert chosen % 8 == 0 and chosen - 8 < np.percentile(whole, 99) <= chosen
    assert (whole <= chosen).mean() >= 0.99
    assert chosen > 128 * 2  # movie reviews: far past the old fixed cap
    assert auto_max_length(split, tok, 512) == 512  # the model's limit wins
    tweets = load_splits(DataConfig(dataset="emotion", max_train_samples=200)).train
    assert auto_max_length(tweets, tok, 512) < 128
