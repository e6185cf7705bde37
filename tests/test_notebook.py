"""examples/tour.ipynb runs from top to bottom in the project's own environment and draws its
pictures; the committed copy keeps its outputs, so it reads on a repository page unrun."""

import json
import pathlib
import re
import sys

import nbformat
from nbclient import NotebookClient

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOK = REPO_ROOT / "examples" / "tour.ipynb"


def _images(notebook):
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs if "image/png" in output.get("data", {})]


def test_committed_notebook_holds_its_outputs():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    assert len(_images(notebook)) >= 4
    assert all(cell.execution_count for cell in notebook.cells if cell.cell_type == "code")


def test_notebook_runs_in_this_environment_and_draws_its_pictures(tmp_path, monkeypatch):
    # A kernel of this interpreter, so the notebook sees the environment the tests run in,
    # whatever kernels the machine has registered.
    spec = tmp_path / "kernels" / "gqn-tf-tests"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "gqn-tf tests", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs = []
    NotebookClient(notebook, timeout=600, kernel_name="gqn-tf-tests",
                   resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    images = _images(notebook)
    assert len(images) == len(_images(nbformat.read(NOTEBOOK, as_version=4)))
    text = "".join(output.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                   for output in cell.outputs)
    assert re.search(r"step \d+: tower representation", text) and "KL by M:" in text
    assert not [output for cell in notebook.cells if cell.cell_type == "code"
                for output in cell.outputs if output.output_type == "error"]
