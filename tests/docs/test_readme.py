"""Every code block of the README runs as written.

- ``python`` blocks are saved as a script and run on the local endpoint; each must exit 0 and
  report ``exit flag 0``.
- ``console`` blocks: every ``$`` line runs in a shell from the repository's folder. A
  ``pip install`` line runs with ``--dry-run`` (plus flags that keep it offline and leave this
  environment alone), so it proves the line names an installable project and extras.
- Blocks without a language are the two set-up commands, exactly; ``.ci/run`` calls them.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest

from tests.docs.helpers import ROOT

README = ROOT / "README.md"
SETUP_COMMANDS = ["python3 run.py demo", "python3 run.py tests"]
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)


def blocks() -> list[tuple[str, str]]:
    """Return ``(language, text)`` of every fenced block of the README, in order."""
    found = []
    for match in FENCE.finditer(README.read_text()):
        indent = len(match.group(1))
        text = "\n".join(line[indent:] for line in match.group(3).splitlines())
        found.append((match.group(2), text))
    return found


def _env() -> dict[str, str]:
    bindir = os.path.dirname(sys.executable)
    return dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")


def test_the_readme_has_the_blocks_this_module_runs():
    kinds = [lang for lang, _ in blocks()]
    assert kinds.count("python") >= 2, kinds
    assert set(kinds) <= {"", "python", "console"}, f"no runner for README blocks of kind {set(kinds)}"


def test_set_up_is_the_two_commands_and_ci_runs_them():
    plain = [text.strip() for lang, text in blocks() if lang == ""]
    assert plain == SETUP_COMMANDS
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    for command in SETUP_COMMANDS:
        assert any(line.strip().startswith(command) for line in ci), f".ci/run does not run {command!r}"


@pytest.mark.parametrize("index", [i for i, (lang, _) in enumerate(blocks()) if lang == "python"])
def test_python_block_runs_on_the_local_endpoint(index, tmp_path):
    script = tmp_path / f"readme_block_{index}.py"
    script.write_text(blocks()[index][1] + "\n")
    done = subprocess.run(
        [sys.executable, script.name], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "exit flag 0" in done.stdout, done.stdout[-3000:]


def _console_commands() -> list[str]:
    commands = []
    for lang, text in blocks():
        if lang == "console":
            commands += [line[2:] for line in text.splitlines() if line.startswith("$ ")]
    return commands


@pytest.mark.parametrize("command", _console_commands())
def test_console_command_runs(command, tmp_path):
    words = shlex.split(command)
    if words[1:4] == ["-m", "pip", "install"]:
        # as written, but only resolved: offline, no dependencies, nothing installed
        words = [
            sys.executable,
            *words[1:4],
            "--dry-run",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            *words[4:],
        ]
    done = subprocess.run(words, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if "--dry-run" in words:
        assert "Would install libe-gc-bundle" in done.stdout, done.stdout


def test_the_quick_start_page_shows_the_readme_examples():
    page = (ROOT / "docs" / "quickstart.rst").read_text()
    shown = re.findall(r"^\.\. code-block:: python\n\n(.*?)(?=^\S)", page, re.S | re.M)
    shown = ["\n".join(line[3:] for line in block.splitlines()).strip() for block in shown]
    assert shown == [text.strip() for lang, text in blocks() if lang == "python"]
