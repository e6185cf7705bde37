"""gqn_tf/files.py: a failed write keeps the file that was there and leaves nothing behind."""

import json

import pytest

from gqn_tf import files


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "metrics.json"
    files.write_json(str(path), {"step": 1}, indent=2)
    files.write_json(str(path), {"step": 2}, indent=2)
    assert json.loads(path.read_text()) == {"step": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"good")

    def half_then_crash(temporary):
        assert temporary.endswith(".npz")  # the extension is kept (Keras checks .keras)
        with open(temporary, "wb") as f:
            f.write(b"ha")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.write_atomically(str(path), half_then_crash)
    assert path.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]
