"""The documentation holds: a one-screen README, relative links and anchors that resolve,
every flag of the main commands documented, the command reference current, and commands that
use relative or /tmp paths only."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path):
    return {_slug(line.lstrip("#")) for line in path.read_text().splitlines()
            if re.match(r"#{1,6} ", line)}


def test_readme_is_one_screen_of_what_a_newcomer_needs():
    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    for needed in ("pip install -r requirements.txt", "python train.py", "python render.py",
                   "python -m pytest -q tests", "docs/images/orbit_sample0.gif"):
        assert needed in text


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_and_anchors_resolve(page):
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        assert resolved.exists(), f"{page.name}: {target} does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name}: no heading #{anchor} in {path}"


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_pages_use_relative_or_tmp_paths_only(page):
    text = page.read_text()
    found = re.findall(r"(?<![\w.~])/(?:work|home|root|Users|mnt|srv|opt)/[\w./-]*", text)
    assert not found, f"{page.name} names paths of one machine: {found}"


def _make_commands():
    """docs/make_commands.py as a module: its reading of a command's help is the one used."""
    spec = importlib.util.spec_from_file_location("make_commands",
                                                  REPO_ROOT / "docs" / "make_commands.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", ["train.py", "evaluate.py", "render.py", "train_jax.py"])
def test_every_flag_of_the_main_commands_is_explained_on_a_page(script):
    ours = _make_commands().help_text(script)  # --helpfull without absl's own flags
    names = set(re.findall(r"(?m)^  --(?:\[no\])?(\w+)", ours))
    assert len(names) > 10
    # on the task pages, not only in the generated reference
    docs = "\n".join(page.read_text() for page in PAGES if page.name != "commands.md")
    missing = sorted(name for name in names
                     if f"--{name}" not in docs and f"--[no]{name}" not in docs)
    assert not missing, f"{script}: flags explained on no page: {missing}"


def test_the_check_fails_on_a_stale_reference_and_passes_once_it_is_rewritten(
        tmp_path, monkeypatch, capsys):
    make_commands = _make_commands()
    monkeypatch.setattr(make_commands, "COMMANDS", [("view.py", "the viewer")])
    monkeypatch.setattr(make_commands, "OUT", tmp_path / "commands.md")
    make_commands.OUT.write_text("# Commands and flags\n\nan older reference\n")

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["make_commands.py", *args])
        make_commands.main()

    with pytest.raises(SystemExit) as stale:
        run("--check")
    assert stale.value.code == 1
    assert "is out of date: run python docs/make_commands.py" in capsys.readouterr().err
    run()
    assert "## `python view.py`" in make_commands.OUT.read_text()
    run("--check")  # current now: returns without exiting


def test_command_reference_is_current():
    result = subprocess.run([sys.executable, "docs/make_commands.py", "--check"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
