"""The README and docs/ as written: their Python examples run, their experiment files
validate, their command lines parse, their links resolve, and the data dictionary and the
support matrix they show match what the code produces.

Conventions in the Markdown (see docs/development.md): a ```` ```python ```` block runs (the
blocks of one file in order, in one namespace, in a temporary working directory); a
```` ```python no-run ```` block does not (kept few); a ```` ```yaml ```` block whose first
line is ``# file: NAME`` is a complete experiment, written to ``NAME`` in that directory
before the file's Python blocks run and validated; a ```` ```yaml fragment ```` block is part
of one (parsed as YAML only). Shell blocks do not run; their ``./advh``/``advharness`` lines
are parsed by the CLI's own parser.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", re.S | re.M)
#: At most this many Python blocks may be marked ``no-run`` in all the docs together.
MAX_NO_RUN = 2


def blocks(path: Path) -> list[tuple[str, str]]:
    """``(info string, body)`` of every fenced block of ``path``, in order."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(path.read_text())]


def _file_name(body: str) -> str | None:
    first = body.splitlines()[0] if body.strip() else ""
    m = re.match(r"#\s*file:\s*(\S+)\s*$", first)
    return m.group(1) if m else None


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


RUNNABLE = [p for p in DOCS if any(info == "python" for info, _ in blocks(p))]


def test_docs_exist_and_readme_is_short() -> None:
    assert len(DOCS) >= 8, DOCS
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250


def test_block_kinds_are_known_and_no_run_is_rare() -> None:
    """Every python/yaml block is one of the kinds above; ``no-run`` blocks are few."""
    no_run = 0
    for path in DOCS:
        for info, body in blocks(path):
            lang = info.split()[0] if info else ""
            if lang == "python":
                assert info in ("python", "python no-run"), f"{path.name}: ```{info}"
                no_run += info == "python no-run"
            if lang == "yaml":
                assert info == "yaml fragment" or (info == "yaml" and _file_name(body)), (
                    f"{path.name}: a yaml block is '# file: NAME' (an experiment) or "
                    f"'yaml fragment':\n{body[:200]}"
                )
    assert no_run <= MAX_NO_RUN


@pytest.mark.parametrize("path", RUNNABLE, ids=_ids(RUNNABLE))
def test_python_blocks_run_as_written(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file's experiment files are written, then its Python blocks run in order."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__doc_example__"}
    for info, body in blocks(path):
        if info == "yaml" and _file_name(body):
            (tmp_path / str(_file_name(body))).write_text(body)
    for n, (info, body) in enumerate(blocks(path)):
        if info == "python":
            code = compile(body, f"{path.name}[block {n}]", "exec")
            exec(code, namespace)


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_experiment_blocks_validate(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``# file:`` YAML block is a valid experiment; every fragment is valid YAML."""
    import yaml

    from advharness import load_experiment

    monkeypatch.chdir(tmp_path)
    for info, body in blocks(path):
        if info == "yaml fragment":
            assert isinstance(yaml.safe_load(body), dict)
        elif info == "yaml":
            name = str(_file_name(body))
            (tmp_path / name).write_text(body)
            exp = load_experiment(name)
            assert exp.attacks and exp.models


def _cli_lines(path: Path) -> list[list[str]]:
    """The ``./advh``/``advharness`` command lines of the shell blocks, as argv lists
    (comments removed; ``./advh test``, ``check`` and ``lock`` are ``advh``'s own)."""
    out = []
    for info, body in blocks(path):
        if info not in ("bash", "sh", "shell"):
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            own = words[1:2] in (["test"], ["check"], ["lock"])
            if words[:1] in (["./advh"], ["advharness"]) and not own:
                out.append(words[1:])
    return out


CLI_DOCS = [p for p in DOCS if _cli_lines(p)]


@pytest.mark.parametrize("path", CLI_DOCS, ids=_ids(CLI_DOCS))
def test_command_lines_parse(path: Path) -> None:
    """Each documented command line is accepted by the CLI's parser (options and overrides
    as :func:`advharness.cli.main` takes them)."""
    from advharness.cli import build_parser

    for argv in _cli_lines(path):
        args, extra = build_parser().parse_known_args(argv)
        assert all("=" in e and not e.startswith("-") for e in extra), (argv, extra)
        assert not extra or args.command == "run", argv


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_relative_links_resolve(path: Path) -> None:
    """Links to other files exist, and their ``#anchors`` name a heading there."""
    text = FENCE.sub("", path.read_text())
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        assert dest.is_file(), f"{path.name}: link to missing {target}"
        if anchor and dest.suffix == ".md":
            headings = re.findall(r"^#+ (.+)$", FENCE.sub("", dest.read_text()), re.M)
            assert anchor in {_slug(h) for h in headings}, f"{path.name}: no #{anchor} in {file}"


def _documented(section: str) -> set[str]:
    """The backticked names in the first column of the tables under ``## <section>`` of
    docs/results.md."""
    text = (ROOT / "docs" / "results.md").read_text()
    part = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in part.splitlines():
        if line.startswith("| ") and not line.startswith("| column"):
            names.update(re.findall(r"`([^`]+)`", line.split(" | ")[0]))
    return names


def _generic(column: str) -> str:
    """``param_c`` -> ``param_<name>``; ``success_at_q100`` -> ``success_at_q<L>``."""
    column = re.sub(r"^param_\w+$", "param_<name>", column)
    return re.sub(r"_q\d+$", "_q<L>", column)


def test_data_dictionary_lists_every_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run with every kind of row (white-box, minimum-norm at a radius, black-box with a
    budget, transfer, eps search, convergence check, error, unsupported) has no summary or
    records column that docs/results.md does not describe."""
    from advharness import run_experiment
    from advharness.config.experiment import parse_experiment

    monkeypatch.syspath_prepend(str(ROOT / "tests"))  # faulty.py: an adapter that raises
    exp = parse_experiment(
        {
            "name": "dictionary",
            "data": {"dataset": "digits", "n_samples": 8},
            "models": [{"recipe": "digits_mlp", "framework": ["torch", "tensorflow"]}],
            "libraries": ["art", "faulty:FaultyAdapter"],
            "checks": ["convergence"],
            "convergence_samples": 4,
            "attacks": [
                {"attack": "bim", "eps": 0.1, "steps": 2},  # and its convergence cell
                {"attack": "fgsm", "search": {"eps": {"start": 0.1, "max": 0.2, "steps": 1}}},
                {"attack": "fgsm", "eps": 0.01},  # the faulty adapter raises: an error row
                {"attack": "deepfool", "steps": 5, "eps": 0.5},
                {
                    "attack": "hsj",
                    "steps": 1,
                    "budget": 20,
                    "query_levels": [10],
                    "params": {"max_evals": 10, "init_evals": 5},
                },
                {"attack": "fgsm", "eps": 0.1, "source": "digits_mlp-tensorflow"},
            ],
            "defenses": [  # a randomized defense (evaluations, EOT surrogate) and a detector
                {
                    "defense": "gaussian_noise",
                    "of": "digits_mlp-torch",
                    "params": {"sigma": 0.1},
                    "evaluations": 2,
                    "eot": 2,
                },
                {
                    "defense": "squeeze_detector",
                    "of": "digits_mlp-torch",
                    "params": {"bit_depth": 3, "fpr": 0.1},
                },
            ],
        }
    )
    res = run_experiment(exp, tmp_path, backend="inline")
    statuses = set(res.summary["status"])
    assert {"ok", "error", "unsupported"} <= statuses, statuses
    assert "transfer" in set(res.summary["threat_model"])
    assert "convergence" in set(res.summary["check"]) and "search_eps" in res.records
    summary = {_generic(c) for c in res.summary.columns}
    records = {_generic(c) for c in res.records.columns}
    assert summary - _documented("Summary columns") == set()
    assert records - _documented("Records columns") == set()


def test_support_matrix_in_docs_is_current() -> None:
    """The matrix printed in docs/library-quirks.md is what ``advharness list`` prints."""
    from advharness import support_matrix

    text = (ROOT / "docs" / "library-quirks.md").read_text()
    table = text.split("```text\n", 1)[1].split("```", 1)[0]
    m = support_matrix()
    groups = list(dict.fromkeys(zip(m["library"], m["framework"], strict=True)))
    shown = {}
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("│").split("│")]
        if len(cells) == len(groups) + 1 and " " in cells[0]:
            shown[tuple(cells[0].split())] = cells[1:]
    expected = {}
    for (attack, norm), rows in m.groupby(["attack", "norm"], sort=False):
        row = []
        for lib, fw in groups:
            sel = rows[(rows["library"] == lib) & (rows["framework"] == fw) & rows["supported"]]
            modes = [c for c, t in (("u", False), ("t", True)) if t in set(sel["targeted"])]
            row.append("+".join(modes) or "-")
        expected[(attack, norm)] = row
    assert shown == expected


def test_readme_python_blocks_use_the_top_level_api() -> None:
    """README examples import the harness's names from its top package only (no module
    paths that a reorganisation of the package would break)."""
    deep = re.compile(r"^\s*(from|import)\s+(adv)?harness\.", re.M)
    for info, body in blocks(ROOT / "README.md"):
        if info.startswith("python"):
            assert not deep.search(body), body
