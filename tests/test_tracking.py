"""The JSONL history: one flushed line per log call, rewound to the checkpoint on resume."""

import json

from liftkit.tracking import JsonlLogger


def test_lines_are_written_at_once_and_a_resume_drops_what_came_after_its_checkpoint(tmp_path):
    path = tmp_path / "history.jsonl"
    logger = JsonlLogger(path)
    logger.start(0)
    for step in (10, 20, 30):
        logger.log({"epoch": 1, "loss": step / 10, "lr": float("nan")}, step)
        assert len(path.read_text().splitlines()) == step // 10  # flushed: a kill keeps it
    logger.close()
    assert json.loads(path.read_text().splitlines()[0]) == {"step": 10, "epoch": 1, "loss": 1.0, "lr": None}  # NaN is not JSON
    with path.open("a") as f:
        f.write('{"step": 40, "epoch": 2, "lo')  # a line a kill cut short
    resumed = JsonlLogger(path)
    resumed.start(20)
    resumed.log({"epoch": 2, "loss": 0.5}, 25)
    resumed.close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [10, 20, 25]


def test_a_fresh_run_starts_an_empty_history(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text('{"step": 5}\n')
    logger = JsonlLogger(path)
    logger.start(0)
    logger.close()
    assert path.read_text() == ""
