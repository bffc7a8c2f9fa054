"""The documentation runs: every Python and bash block of README.md and docs/*.md, in order.

Python blocks of one page share a namespace (a fresh one per page) and run in a scratch
folder that links the repository's top-level folders, so paths such as
``pretrained/allegro-emt-metals/config.yaml`` work and files the examples write land in the
scratch folder. Bash blocks run there too, with ``bash -euo pipefail``. Both see
``OMP_NUM_THREADS=1``, ``ALLEGRO_ASE_OFFLINE=1`` and an empty ``ALLEGRO_ASE_CACHE``.

A block that cannot run here (a download, a GPU, LAMMPS, a long training) carries an HTML
comment on the line right above it: ``<!-- doc-test: skip (why) -->``. Skips must give a
reason and stay rare (``MAX_SKIPPED_FRACTION``). A block of any language that the page asks the
reader to save carries ``<!-- doc-test: file NAME -->`` and is written to ``NAME`` when the run
reaches it. YAML blocks that are training configs (they set ``output_dir``) are validated by
``TrainConfig``.

Also here: the generated configuration reference equals its renderer's output, the README's
table of held-out errors equals ``pretrained/*/heldout_metrics.json``, and every page is
linked from ``docs/README.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
DIRECTIVE = re.compile(r"<!--\s*doc-test:\s*(.*?)\s*-->")
SKIP = re.compile(r"skip \((.+)\)")
FILE = re.compile(r"file ([\w.-]+)")
MAX_SKIPPED_FRACTION = 0.3
BASH_TIMEOUT_S = 120

sys.path.insert(0, str(ROOT / "tools"))
import config_reference  # noqa: E402  (tools/config_reference.py)


@dataclasses.dataclass
class Block:
    """A fenced code block: language tag, first line, code, skip reason and file to write."""

    language: str
    line: int
    code: str
    skip: str | None
    file: str | None = None


def code_blocks(text: str) -> list[Block]:
    """Fenced blocks of a Markdown text with the ``doc-test`` directive in the comments above.

    Raises
    ------
    ValueError
        A ``doc-test`` comment that is neither ``skip (reason)`` nor ``file NAME``, or an
        unclosed fence.
    """
    lines = text.splitlines()
    blocks, k = [], 0
    while k < len(lines):
        fence = re.match(r"^(\s*)(`{3,})(.*)$", lines[k])
        if not fence:
            k += 1
            continue
        indent, ticks, language = fence.group(1), fence.group(2), fence.group(3).strip()
        end = next((m for m in range(k + 1, len(lines)) if lines[m].strip() == ticks), None)
        if end is None:
            raise ValueError(f"line {k + 1}: the code fence is not closed")
        skip, file, above = None, None, k - 1
        while above >= 0 and lines[above].strip().startswith("<!--"):
            directive = DIRECTIVE.search(lines[above])
            if directive:
                reason = SKIP.fullmatch(directive.group(1))
                name = FILE.fullmatch(directive.group(1))
                if not (reason or name):
                    raise ValueError(
                        f"line {above + 1}: write <!-- doc-test: skip (reason) --> or "
                        f"<!-- doc-test: file NAME -->, got {lines[above].strip()!r}"
                    )
                skip = reason.group(1).strip() if reason else skip
                file = name.group(1) if name else file
            above -= 1
        body = [line.removeprefix(indent) for line in lines[k + 1 : end]]
        blocks.append(Block(language, k + 2, "\n".join(body) + "\n", skip, file))
        k = end + 1
    return blocks


def runnable(page: Path) -> list[Block]:
    """The page's Python and bash blocks."""
    return [block for block in code_blocks(page.read_text()) if block.language in LANGUAGES]


def steps(page: Path) -> list[Block]:
    """What the page's run does, in order: Python and bash blocks, and files to write."""
    blocks = code_blocks(page.read_text())
    return [block for block in blocks if block.language in LANGUAGES or block.file]


def test_code_blocks_are_found_with_their_directives():
    text = (
        "intro\n\n```python\nx = 1\n```\n\n<!-- other -->\n<!-- doc-test: skip (needs LAMMPS) -->\n"
        "```bash\nlmp -in in.lmp\n```\n\n<!-- doc-test: file a.yaml -->\n  ```yaml\n  a: 1\n  ```\n"
    )
    blocks = code_blocks(text)
    assert [(b.language, b.line, b.code, b.skip, b.file) for b in blocks] == [
        ("python", 4, "x = 1\n", None, None),
        ("bash", 10, "lmp -in in.lmp\n", "needs LAMMPS", None),
        ("yaml", 15, "a: 1\n", None, "a.yaml"),
    ]
    with pytest.raises(ValueError, match="skip \\(reason\\)"):
        code_blocks("<!-- doc-test: skipp -->\n```bash\nls\n```\n")
    with pytest.raises(ValueError, match="not closed"):
        code_blocks("```python\nx = 1\n")


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A working folder that links the repository's top-level folders; offline, 1 thread.

    The environment is restored afterwards whatever the page sets (``os.environ[...]``).
    """
    for entry in ROOT.iterdir():
        if entry.is_dir() and not entry.name.startswith(".") and entry.name != "build":
            (tmp_path / entry.name).symlink_to(entry, target_is_directory=True)
    saved = dict(os.environ)
    os.environ.pop("ALLEGRO_ASE_REGISTRY", None)
    os.environ.update(
        OMP_NUM_THREADS="1",
        ALLEGRO_ASE_OFFLINE="1",
        ALLEGRO_ASE_CACHE=str(tmp_path / "cache"),
        PATH=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
    )
    monkeypatch.chdir(tmp_path)
    yield tmp_path
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_page_code_blocks_run(page, scratch):
    import numpy as np
    import torch

    # a page is user code: it may set torch's threads or draw from the global RNGs
    threads, torch_rng, numpy_rng = (
        torch.get_num_threads(),
        torch.random.get_rng_state(),
        np.random.get_state(),
    )
    namespace: dict = {"__name__": f"doc_{page.stem}"}
    try:
        for block in steps(page):
            if block.skip:
                continue
            where = f"{page.relative_to(ROOT)}:{block.line}"
            if block.file:
                (scratch / block.file).write_text(block.code)
            elif LANGUAGES[block.language] == "python":
                exec(compile(block.code, where, "exec"), namespace)  # noqa: S102
            else:
                done = subprocess.run(
                    ["bash", "-euo", "pipefail", "-c", block.code],
                    cwd=scratch,
                    capture_output=True,
                    text=True,
                    timeout=BASH_TIMEOUT_S,
                )
                assert done.returncode == 0, f"{where} failed:\n{done.stdout}\n{done.stderr}"
    finally:
        torch.set_num_threads(threads)
        torch.random.set_rng_state(torch_rng)
        np.random.set_state(numpy_rng)


def test_skipped_blocks_give_a_reason_and_are_rare():
    blocks = [(page, block) for page in PAGES for block in runnable(page)]
    skipped = [(page, block) for page, block in blocks if block.skip is not None]
    for page, block in skipped:
        assert len(block.skip.split()) >= 2, f"{page.name}:{block.line}: say why it is skipped"
    assert len(blocks) >= 30
    assert len(skipped) <= MAX_SKIPPED_FRACTION * len(blocks), [
        f"{page.name}:{block.line} ({block.skip})" for page, block in skipped
    ]


def test_yaml_training_configs_in_the_docs_are_valid():
    from allegro_ase.training import TrainConfig

    checked = 0
    for page in PAGES:
        for block in code_blocks(page.read_text()):
            if block.language != "yaml":
                continue
            values = yaml.safe_load(block.code)
            if isinstance(values, dict) and "output_dir" in values:
                TrainConfig.from_dict(values)  # unknown keys and bad values raise
                checked += 1
    assert checked >= 2


def test_config_reference_page_is_rendered_from_the_config_classes():
    page = ROOT / "docs" / "config_reference.md"
    assert page.read_text() == config_reference.render(), (
        "docs/config_reference.md is out of date: run python tools/config_reference.py --write"
    )


def test_config_reference_covers_every_field_and_nothing_else():
    from allegro_ase.training import config as training_config

    keys = {f.name for f in dataclasses.fields(training_config.TrainConfig)}
    sections = {"init": training_config.InitConfig, **training_config._SECTIONS}
    for name, section in sections.items():
        keys |= {f"{name}.{f.name}" for f in dataclasses.fields(section)}
    assert set(config_reference.TRAINING) == keys
    for cls in config_reference.MODELS.values():
        grouped = [f.name for fields, _ in config_reference.model_groups(cls) for f in fields]
        assert sorted(grouped) == sorted(f.name for f in dataclasses.fields(cls))
        assert set(config_reference.FROM_DATA) <= set(grouped)


def test_config_reference_reads_defaults_from_the_dataclasses():
    from allegro_ase.models import AllegroConfig

    rendered = config_reference.render()
    assert "| `max_epochs` | `int` | 500 |" in rendered
    assert "`schedule.patience` | `int` | 10 |" in rendered
    shown = {key: default for key, _, default, _ in config_reference.model_rows(AllegroConfig)}
    assert shown["`num_layers`<br>`num_scalar_features`<br>`num_tensor_features`"] == (
        "2<br>64<br>16"
    )


# ----- troubleshooting ---------------------------------------------------------------------

# raised only inside the package and caught there (re-raised as a documented error), or not
# errors of the user's making: an unknown attribute, internal weight-mapping invariants
INTERNAL_ERRORS = {"TreeError", "UnsafePickleError", "_WrappedFile", "_interrupted",
                   "AttributeError", "KeyError", "ArgumentTypeError"}  # fmt: skip


def raised_error_names() -> set[str]:
    """Names of the exception classes that ``raise`` statements in the package use."""
    import ast

    names = set()
    for path in (ROOT / "allegro_ase").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and node.exc is not None:
                error = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                names.add(ast.unparse(error).split(".")[-1])
    return names


def test_troubleshooting_names_every_error_the_package_raises():
    page = (ROOT / "docs" / "troubleshooting.md").read_text()
    names = raised_error_names()
    assert {"InputError", "ZooError", "CheckpointError", "NequIPFileError"} <= names
    undocumented = sorted(name for name in names - INTERNAL_ERRORS if f"`{name}`" not in page)
    assert not undocumented, f"add these errors to docs/troubleshooting.md: {undocumented}"


# ----- the README's table of shipped models ------------------------------------------------


def readme_error_table() -> dict[str, str]:
    """Rows (by model name) of the README table whose header starts ``| model |`` with E MAE."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(
        k for k, line in enumerate(lines) if line.startswith("| model |") and "E MAE" in line
    )
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows[line.strip("|").split("|")[0].strip().strip("`")] = line
    return rows


def three_digits(value: float) -> str:
    """A value to three significant digits, without an exponent (0.601, 7.26, 11.5, 1234)."""
    decimals = max(0, 2 - math.floor(math.log10(abs(value)))) if value else 2
    return f"{value:.{decimals}f}"


def error_row(name: str, metrics: dict) -> str:
    """The README row of a model from its heldout_metrics.json (meV units; – where absent)."""
    cells = [f"`{name}`", f"{metrics['num_frames']:,}"]
    for quantity in ("energy_per_atom", "forces", "stress"):
        for statistic in ("mae", "rmse"):
            value = metrics.get(f"{quantity}_{statistic}")
            cells.append("–" if value is None else three_digits(value))
    return "| " + " | ".join(cells) + " |"


def test_error_rows_round_to_three_significant_digits():
    metrics = {"num_frames": 1400, "energy_per_atom_mae": 0.60107, "energy_per_atom_rmse": 1.1678,
               "forces_mae": 30.4997, "forces_rmse": 1234.5}  # fmt: skip
    assert error_row("m", metrics) == "| `m` | 1,400 | 0.601 | 1.17 | 30.5 | 1234 | – | – |"


def test_readme_error_table_matches_heldout_metrics_files():
    from allegro_ase import list_models

    rows = readme_error_table()
    shipped = [entry for entry in list_models() if entry.shipped]
    assert sorted(rows) == sorted(entry.name for entry in shipped)
    for entry in shipped:
        metrics_file = (entry.root / entry.file).parent / "heldout_metrics.json"
        expected = error_row(entry.name, json.loads(metrics_file.read_text()))
        assert rows[entry.name] == expected, (
            f"README.md's held-out row of {entry.name} differs from {metrics_file}; "
            f"write:\n{expected}"
        )


# ----- links -------------------------------------------------------------------------------


def test_docs_index_links_every_page():
    index = (ROOT / "docs" / "README.md").read_text()
    linked = set(re.findall(r"\]\(([\w.-]+\.md)\)", index))
    pages = {page.name for page in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages <= linked, f"not linked from docs/README.md: {sorted(pages - linked)}"


def test_relative_links_point_at_files():
    missing = []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue
            if not (page.parent / target).exists():
                missing.append(f"{page.relative_to(ROOT)} -> {target}")
    assert not missing, missing
