"""The input-pipeline benchmark runs end to end on the bundled sample and reports consistent
figures. Only that it works and what it prints are checked here, never how fast anything is."""

import json
import pathlib
import subprocess
import sys

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_benchmark_prints_every_input_and_a_consistent_json_line(sample_dir):
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "benchmarks" / "input_pipeline.py"),
         "--data_dir", str(sample_dir), "--rounds", "1", "--seconds", "0.2",
         "--batch_size", "8", "--context_size", "2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    for name in ("pipeline:", "decode only (map_fn):", "decode only (unrolled):",
                 "decode + float (unrolled):", "ratio:", "for comparison:"):
        assert any(line.startswith(name) for line in lines), (name, result.stdout)
    figures = json.loads(lines[-1])
    assert figures["context_size"] == 2 and figures["batch_size"] == 8
    for key in ("scenes_per_s", "decode_only_scenes_per_s", "decode_float_scenes_per_s",
                "cpu_us_per_scene", "decode_only_cpu_us_per_scene"):
        assert figures[key] > 0, key
    # The ratio is against the faster plain decode loop, never the float-converting one.
    assert figures["decode_only_loop"] in ("decode only (map_fn)", "decode only (unrolled)")
    assert abs(figures["ratio"] - figures["scenes_per_s"]
               / figures["decode_only_scenes_per_s"]) < 2e-3
    assert abs(figures["frames_per_s"] - 3 * figures["scenes_per_s"]) < 1.0
