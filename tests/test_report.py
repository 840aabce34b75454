"""``advharness report``: a real tiny run (torch, ART and Foolbox, a fixed-budget, a
score-based and a decision-based attack, adversarials stored) rendered to HTML and
Markdown; the page is opened in headless Chromium, which must show every table and image.

Chromium is Debian's ``chromium``: the session fixture installs it when it is missing
(``apt-get``, as root) and fails, never skips, when it cannot.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from advharness.cli import main
from advharness.config.experiment import parse_experiment
from advharness.execution.orchestrate import run_experiment
from advharness.reporting.render import to_latex, to_markdown
from advharness.reporting.report import SECTIONS, Fragment, ReportContext, Section, write_report
from advharness.reporting.report.base import paragraph
from advharness.reporting.results import read_results
from advharness.reporting.tables import row_labels, table_rows

EXP = {
    "name": "tiny",
    "save_adversarials": True,
    "data": {"dataset": "digits", "n_samples": 12},
    "models": [{"recipe": "digits_mlp", "framework": "torch"}],
    "libraries": ["art", "foolbox"],
    "attacks": [
        {"attack": "fgsm", "eps": [0.05, 0.1]},
        {"attack": "deepfool", "steps": 10, "eps": 0.5},  # minimum-norm: distance CDFs, optimality
        {"attack": "square", "eps": 0.2, "budget": 40, "query_levels": [10, 40]},  # ART only
        {
            "attack": "hsj",
            "steps": 1,
            "budget": 30,
            "query_levels": [10, 30],
            "params": {"max_evals": 10, "init_evals": 5},
        },
    ],
}
#: The sections drawn from advharness.analytics (every one has data in this run).
ANALYTICS = ("security-curves", "distance-cdfs", "optimality", "agreement", "worst-case")
APT = "DEBIAN_FRONTEND=noninteractive apt-get"
INSTALL = f"{APT} update -q && {APT} install -y -q --no-install-recommends chromium"


@pytest.fixture(scope="session")
def chromium(request: pytest.FixtureRequest) -> str:
    """The ``chromium`` executable; installed with apt-get (once) when missing."""
    found = shutil.which("chromium")
    if found:
        return found
    if os.geteuid() != 0:
        pytest.fail(f"chromium is not installed and this is not root: run `{INSTALL}` as root", pytrace=False)
    start = time.perf_counter()
    p = subprocess.run(["sh", "-c", INSTALL], capture_output=True, text=True, timeout=1200)
    took = time.perf_counter() - start
    found = shutil.which("chromium")
    if p.returncode != 0 or not found:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
        pytest.fail(f"installing chromium failed (exit {p.returncode}, {took:.0f} s): {INSTALL}\n{tail}")
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is not None and capture is not None:  # shown even under output capture
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"chromium installed in {took:.1f} s ({INSTALL})")
    return found


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    res = run_experiment(parse_experiment(EXP), tmp_path_factory.mktemp("report"), backend="inline")
    assert res.path is not None
    return res.path


def _browser(chromium: str, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp / 'profile'}"]
    return subprocess.run([chromium, *flags, *args], capture_output=True, text=True, timeout=180)


def test_page_renders_in_headless_chromium(run_dir: Path, chromium: str, tmp_path: Path) -> None:
    """Every table and image of the page renders; nothing points outside the page."""
    page = write_report(run_dir, tmp_path / "out")
    text = page.read_text()
    external = [u for u in re.findall(r'(?:src|href)="([^"]*)"', text) if not u.startswith(("data:", "#"))]
    assert not external, external  # self-contained: no file or network reference
    shot = tmp_path / "shot.png"
    p = _browser(chromium, tmp_path, f"--screenshot={shot}", "--window-size=1280,4000", page.as_uri())
    assert p.returncode == 0 and shot.is_file(), p.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.format == "PNG" and im.size == (1280, 4000)
        pixels = np.asarray(im.convert("RGB")).reshape(-1, 3)
    assert len(np.unique(pixels[::97], axis=0)) > 10  # not blank: text, tables, plots
    dom = _browser(chromium, tmp_path, "--virtual-time-budget=10000", "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    loaded = re.search(r'<body[^>]*data-images-loaded="(\d+)/(\d+)"', dom.stdout)
    assert loaded, dom.stdout[:500]  # the page's check script ran
    ok, total = map(int, loaded.groups())
    # security curves, distance CDFs, agreement, time/success, queries, 2+ example grids
    assert ok == total and total >= 7, (ok, total)
    assert dom.stdout.count("<table") >= 11
    assert 'class="h2h"' in dom.stdout


def test_markdown_has_the_tables_and_its_figures(run_dir: Path, tmp_path: Path) -> None:
    page = write_report(run_dir, tmp_path / "out")
    md = page.with_name("report.md").read_text()
    from advharness.analytics import sanity_checks

    result = read_results(run_dir)
    s, checks = result.summary, sanity_checks(result.summary, result.records, result.probes)
    for _, part in s.groupby("threat_model", sort=False):  # one table per threat model
        assert to_markdown(part, checks=checks).strip() in md
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert len(figures) >= 7 and all((page.parent / f).is_file() for f in figures)
    for needle in (
        "## What was run",
        "digits\\_mlp-torch",
        "foolbox 3.3.4 has no square attack",  # the unsupported cell's reason, under flags
        "Clean inputs: reloaded",  # x was recovered: perturbations are shown
    ):
        assert needle in md, needle
    # this run has every section's data but the defenses' (tests/test_harden.py has those) and
    # the published figures' (tests/test_expectations.py)
    assert md.count("not available") == 2 and "not available: no defended model in this run" in md
    assert "not available: the experiment has no expect: entries" in md


def test_cli_writes_latex_and_says_where(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "paper"
    assert main(["report", str(run_dir), "--out", str(out), "--latex"]) == 0
    printed = capsys.readouterr().out
    assert str(out / "report.html") in printed and str(out / "latex") in printed
    from advharness.analytics import sanity_checks

    result = read_results(run_dir)
    s, checks = result.summary, sanity_checks(result.summary, result.records, result.probes)
    tex = {p.stem: p.read_text() for p in (out / "latex").glob("*.tex")}
    white = s[s["threat_model"] == "white-box"]
    assert tex["head-to-head-white-box"] == to_latex(white, checks=checks)
    assert {"head-to-head-score-based", "head-to-head-decision-based", "query-levels"} <= set(tex)
    assert all(t.startswith(r"\begin{tabular}") for t in tex.values())


def test_cli_refuses_a_directory_that_is_not_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a results directory" in err, err
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "report").exists()


def _copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "copy", ignore=shutil.ignore_patterns("report")))


def test_sections_without_their_data_say_not_available(run_dir: Path, tmp_path: Path) -> None:
    """No stored adversarials, no manifest, no black-box cells, no records: the sections
    that need them say so; the others still render (the security curves from the summary)."""
    d = _copy(run_dir, tmp_path)
    s = read_results(d).summary
    for key in s.loc[s["threat_model"] != "white-box", "cell_key"]:
        for f in (d / "cells").glob(f"{key}*"):
            f.unlink()
    for f in [*(d / "cells").glob("*.adv.npz"), *(d / "cells").glob("*.parquet"), *d.glob("*.*")]:
        f.unlink()
    md = write_report(d).with_name("report.md").read_text()
    sections = dict(re.findall(r'<a id="([^"]+)"></a>\n\n## [^\n]+\n\n([^\n]*)', md))
    assert sections["examples"].startswith("*not available: no adversarial examples are stored")
    assert sections["query-efficiency"].startswith("*not available: no black-box")
    assert sections["provenance"].startswith("*not available: no manifest.json")
    for key in ANALYTICS[1:]:  # per-sample analytics
        assert sections[key].startswith("*not available: no"), key
    for key in ("overview", "head-to-head", "security-curves", "time-vs-success", "flags"):
        assert not sections[key].startswith("*not available"), key
    assert "fgsm linf eps=0.1" in md


def _sections(md: str) -> dict[str, str]:
    """Each section's anchor -> its content up to the next section."""
    parts = re.split(r'<a id="([^"]+)"></a>\n\n## [^\n]+\n\n', md)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def test_analytics_sections_show_figures_and_tables(run_dir: Path, tmp_path: Path) -> None:
    """Each analytics section renders its figure or table from advharness.analytics."""
    page = write_report(run_dir, tmp_path / "out", latex=True)
    sections = _sections(page.with_name("report.md").read_text())
    for key in ANALYTICS:
        assert "not available" not in sections[key].split("###")[0], key
    for key, fig in (
        ("security-curves", "security-curves"),
        ("distance-cdfs", "distance-cdfs"),
        ("agreement", "library-agreement"),
    ):
        assert f"(figures/{fig}.png)" in sections[key], key
        assert (page.parent / "figures" / f"{fig}.png").is_file()
    assert "| deepfool | art |" in sections["optimality"]  # global optimality, per library
    assert "local\\_optimality" in sections["optimality"]
    agreement = sections["agreement"]
    assert "fgsm linf eps=0.1" in agreement and "deepfool l2" in agreement
    assert re.search(r"\| (identical|equivalent|differs) \|", agreement)
    worst = sections["worst-case"]
    assert "art;foolbox" in worst and "robust accuracy \\[95% CI\\]" in worst
    assert "complementarity" in worst and "not available" not in worst
    tex = {p.stem for p in (page.parent / "latex").glob("*.tex")}
    assert {"global-optimality", "local-optimality", "library-agreement", "complementarity"} <= tex
    assert {"worst-case-libraries", "worst-case-attacks"} <= tex


def test_analytics_sections_without_their_data(run_dir: Path, tmp_path: Path) -> None:
    """One library's fixed-budget cells only: the curves render; no minimum-norm cell (no
    CDFs, no optimality), nothing to pair (no agreement, no worst case over two runs)."""
    d = _copy(run_dir, tmp_path)
    s = read_results(d).summary
    drop = s.loc[(s["library"] != "art") | (s["attack"] != "fgsm") | (s["eps"] != 0.1), "cell_key"]
    for key in set(drop):
        for f in (d / "cells").glob(f"{key}*"):
            f.unlink()
    sections = _sections(write_report(d).with_name("report.md").read_text())
    assert "(figures/security-curves.png)" in sections["security-curves"]
    assert sections["distance-cdfs"].startswith("*not available: no minimum-norm cell")
    assert sections["optimality"].startswith("*not available: no minimum-norm cell")
    assert sections["agreement"].startswith("*not available: a single library")
    assert sections["worst-case"].startswith("*not available: no setting")


def test_adversarials_alone_when_the_clean_inputs_are_not_recoverable(run_dir: Path, tmp_path: Path) -> None:
    """A manifest naming other data than the cells ran on: the grid shows the adversarials
    only and says why."""
    d = _copy(run_dir, tmp_path)
    manifest = (d / "manifest.json").read_text()
    (d / "manifest.json").write_text(manifest.replace('"n_samples": 12', '"n_samples": 10'))
    md = write_report(d).with_name("report.md").read_text()
    assert "their data\\_sha256 or input shape differs" in md
    assert "x\\_adv - x on a diverging scale" not in md


def test_a_new_section_plugs_in_and_a_failing_one_names_itself(run_dir: Path, tmp_path: Path) -> None:
    def cells(ctx: ReportContext) -> Fragment:
        return paragraph(f"{ctx.summary['cell_key'].nunique()} cells in {ctx.name}")

    def broken(ctx: ReportContext) -> Fragment:
        raise ZeroDivisionError("a bug")

    sections = {**SECTIONS, "count": Section("Cell count", cells)}
    page = write_report(run_dir, tmp_path / "a", sections=sections)
    assert '<section id="count">' in page.read_text() and "10 cells in tiny" in page.read_text()
    assert "## Cell count" in page.with_name("report.md").read_text()
    with pytest.raises(ZeroDivisionError) as e:
        write_report(run_dir, tmp_path / "b", sections={"broken": Section("Broken", broken)})
    assert any("'broken'" in n for n in getattr(e.value, "__notes__", []))


def test_confidence_interval_shown_where_the_summary_has_one(run_dir: Path) -> None:
    s = read_results(run_dir).summary
    fgsm = s[s["attack"] == "fgsm"].iloc[:1]
    low, high = float(fgsm["success_rate_ci_low"].iloc[0]), float(fgsm["success_rate_ci_high"].iloc[0])
    assert 0 <= low < high <= 1
    assert f"[{100 * low:.0f}-{100 * high:.0f}]" in to_markdown(fgsm)  # the summary's Wilson bounds
    without = fgsm.drop(columns=[c for c in fgsm.columns if "_ci_" in c])
    assert "[" not in to_markdown(without).split("\n\n")[0].replace("\\|", "")


def test_row_labels_are_the_table_rows(run_dir: Path) -> None:
    """Each summary row's label (what the plots and flags call a setting) is its table row's."""
    s = read_results(run_dir).summary
    labels = row_labels(s)
    assert labels.index.equals(s.index)
    assert set(labels) == {row.label for row in table_rows(s)}  # one family: one-line labels


def test_write_report_is_in_the_top_level_api() -> None:
    import advharness

    assert advharness.write_report is write_report
    assert "write_report" in advharness.__all__


def test_sanity_checks_section_lists_what_fires_and_the_probes(run_dir: Path, tmp_path: Path) -> None:
    """The section shows exactly the checks ``sanity_checks`` finds on these results, and the
    models' probes; a check that fires also marks the head-to-head table."""
    from advharness.analytics import sanity_checks

    result = read_results(run_dir)
    checks = sanity_checks(result.summary, result.records, result.probes)
    page = write_report(run_dir, tmp_path / "out")
    sections = _sections(page.with_name("report.md").read_text())
    text = sections["sanity-checks"]
    if checks.empty:
        assert "No sanity check fired" in text
    else:
        for name in set(checks["check"]):
            assert f"| {name.replace('_', chr(92) + '_')} |" in text or f"| {name} |" in text, name
        assert "checks [" in sections["head-to-head"]
    assert len(result.probes) and "Model probes" in text
    for probe in set(result.probes["probe"]):
        assert probe.replace("_", "\\_") in text or probe in text


def test_sanity_checks_section_on_a_flagged_evaluation(run_dir: Path, tmp_path: Path) -> None:
    """A hand-made failure (a minimum-norm cell below 100 %) is listed with its rule."""
    result = read_results(run_dir)
    s = result.summary.copy()
    minimal = s.index[(s["kind"] == "minimal") & (s["status"] == "ok")]
    assert len(minimal)
    rec = result.records.copy()
    key = s.loc[minimal[0], "cell_key"]
    broken = (rec["cell_key"] == key) & rec["correct"].astype(bool)
    rec.loc[broken, ["success", "success_at_eps"]] = False
    s.loc[s["cell_key"] == key, ["success_rate", "success_rate_at_eps"]] = 0.0
    ctx = ReportContext(type(result)(summary=s, records=rec), run_dir)
    fragment = SECTIONS["sanity-checks"].build(ctx)
    assert "No sanity check fired" not in fragment.markdown
    assert "minimum\\_norm" in fragment.markdown and "I6" in fragment.markdown
