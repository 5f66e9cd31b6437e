"""report.html and compare.html: written by runs, redrawn by `lift report`, opened in a real browser."""

from __future__ import annotations

import base64
import re
import shutil

import pytest

from liftkit import run_dir
from liftkit.cli import main
from liftkit.pipeline import run

PLOTS = ("learning_curves", "confusion_matrices", "per_class", "calibration", "label_distribution")


@pytest.fixture
def finished(tiny_run_config):
    return run(tiny_run_config(), log=lambda m: None).run_dir


def _open(browser_page, page_path) -> tuple[list[list[float]], list[str], str]:
    """Images as (complete, natural width, natural height), errors (a fetch from anywhere but the
    file itself counts as one), and the page's text."""
    page, errors = browser_page
    page.on(
        "request", lambda r: errors.append(f"fetched {r.url}") if not r.url.startswith(("file:", "data:")) else None
    )
    page.goto(page_path.as_uri())
    page.wait_for_load_state("load")
    images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    return images, errors, page.inner_text("body")


def test_a_run_writes_a_self_contained_report_a_browser_shows(finished, browser_page):
    page = finished / run_dir.REPORT_HTML
    source = page.read_text()
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"', source)
    assert len(embedded) == len(PLOTS) == len(re.findall(r"<img ", source))
    assert not re.search(r'(src|href)="(https?:)?//', source)  # nothing fetched from anywhere: opens offline
    for name in PLOTS:  # the PNGs beside the page are the pictures it embeds
        assert base64.b64encode((finished / run_dir.PLOTS / f"{name}.png").read_bytes()).decode() in embedded

    images, errors, text = _open(browser_page, page)
    assert errors == []
    assert len(images) == len(PLOTS) and all(
        complete and width > 0 and height > 0 for complete, width, height in images
    )
    record = run_dir.read_record(finished)
    assert f"{record.finetuned.scores.accuracy:.4f}" in text and f"ECE {record.finetuned.ece:.4f}" in text
    assert record.mistakes and record.mistakes[0].text.split()[0] in text
    assert f"{record.parameters.trainable_params:,}" in text and record.run.torch in text


def test_lift_report_redraws_a_copied_run_without_retraining(finished, tmp_path, capsys):
    copy = tmp_path / "elsewhere"
    shutil.copytree(finished, copy)
    (copy / run_dir.REPORT_HTML).unlink()
    shutil.rmtree(copy / run_dir.PLOTS)
    assert main(["report", str(copy)]) == 0
    assert str(copy / run_dir.REPORT_HTML) in capsys.readouterr().out
    assert sorted(p.stem for p in (copy / run_dir.PLOTS).iterdir()) == sorted(PLOTS)
    assert (copy / run_dir.REPORT_HTML).read_text().count("<img ") == len(PLOTS)


def test_a_run_without_stored_predictions_says_so_instead_of_failing(finished, capsys):
    (finished / run_dir.PREDICTIONS).unlink()  # as in runs written before predictions were kept
    assert main(["report", str(finished)]) == 0
    source = (finished / run_dir.REPORT_HTML).read_text()
    assert "predates stored test predictions" in source and source.count("<img ") == len(PLOTS) - 1


def test_lift_report_over_several_runs_draws_a_comparison(tiny_run_config, tmp_path, browser_page, capsys):
    folders = [
        run(tiny_run_config(**{"method.name": m, "output_dir": str(tmp_path / m)}), log=lambda m: None).run_dir
        for m in ("lora", "head")
    ]
    out = tmp_path / "comparison"
    assert main(["report", *map(str, folders), "--output", str(out)]) == 0
    page = out / run_dir.COMPARE_HTML
    assert str(page) in capsys.readouterr().out
    assert sorted(p.stem for p in (out / run_dir.PLOTS).iterdir()) == ["learning_curves", "tradeoffs"]
    images, errors, text = _open(browser_page, page)
    assert errors == [] and len(images) == 2 and all(c and w > 0 and h > 0 for c, w, h in images)
    for folder in folders:
        record = run_dir.read_record(folder)
        assert f"{record.finetuned.scores.accuracy:.4f}" in text  # the table, one column per method
    assert "1 seed(s)" in text


def test_runs_that_differ_in_a_setting_are_not_averaged_as_seeds(tiny_run_config, tmp_path, capsys):
    folders = [
        run(
            tiny_run_config(**{"train.epochs": 1, "train.class_weights": w, "output_dir": str(tmp_path / w)}),
            log=lambda m: None,
        ).run_dir
        for w in ("none", "balanced")
    ]
    assert (
        main(["report", *map(str, folders), folders[0].as_posix(), "--output", str(tmp_path / "c")]) == 0
    )  # one folder given twice
    source = (tmp_path / "c" / run_dir.COMPARE_HTML).read_text()
    assert (
        "lora (class_weights=none)" in source and "lora (class_weights=balanced)" in source and "1 seed(s)" in source
    )


def test_lift_report_refuses_what_it_cannot_draw_in_one_line(finished, tiny_run_config, tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    other = run(
        tiny_run_config(**{"data.dataset": "rotten_tomatoes", "output_dir": str(tmp_path / "rt")}), log=lambda m: None
    ).run_dir
    capsys.readouterr()  # the training's progress bar
    assert main(["report", str(finished), str(other), "--output", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err.strip()
    assert "different datasets" in err and len(err.splitlines()) == 1


def test_a_run_without_the_base_evaluation_draws_the_fine_tuned_model_alone(tiny_run_config, tmp_path):
    folder = run(
        tiny_run_config(**{"evaluate_base": False, "output_dir": str(tmp_path / "nobase")}), log=lambda m: None
    ).run_dir
    source = (folder / run_dir.REPORT_HTML).read_text()
    assert source.count("<img ") == len(PLOTS) and "base model (untrained head)" not in source
    assert "<h2>Test split</h2>" in source


def test_a_report_that_fails_to_draw_leaves_the_run_finished(tiny_run_config, monkeypatch):
    from liftkit import pages

    def broken(folder):
        raise ValueError("no fonts at all")

    monkeypatch.setattr(pages, "write_run_report", broken)
    lines = []
    result = run(tiny_run_config(), log=lines.append)
    assert run_dir.finished(result.run_dir) and not (result.run_dir / run_dir.ERROR).exists()
    assert any(line.startswith("warning: report.html (`lift report") and "no fonts at all" in line for line in lines)
