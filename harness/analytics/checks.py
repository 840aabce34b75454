"""Evaluation sanity checks: flags on the rows of a run that a sound evaluation never raises.

Each check in :data:`CHECKS` has a rule, a threshold and a source (Carlini et al. 2019, "On
Evaluating Adversarial Robustness", arXiv 1902.06705; Pintor et al. 2022, "Indicators of
Attack Failure"; AutoAttack's flags) and names the columns it needs: without them (a run
without model probes or convergence cells) it reports nothing. :func:`sanity_checks` runs
them all over a run's ``summary`` and ``records`` (and the model ``probes``) and returns one
row per flag. See docs/analytics.md for every rule.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

import pandas as pd

import advharness.analytics.checks_attacks as att
import advharness.analytics.checks_defenses as dfn
import advharness.analytics.checks_minimal as mn
import advharness.analytics.checks_runs as runs
from advharness.analytics.checks_base import Finding, Frames, prepare

Severity = Literal["error", "warning"]

#: The columns of :func:`sanity_checks`' table.
COLUMNS = (
    "check",
    "severity",
    "model",
    "norm",
    "eps",
    "cell_keys",
    "reference_keys",
    "samples",
    "value",
    "threshold",
    "rule",
    "source",
    "message",
)

CARLINI = "Carlini et al. 2019, On Evaluating Adversarial Robustness (arXiv 1902.06705)"
PINTOR = "Pintor et al. 2022, Indicators of Attack Failure"
AUTOATTACK = "AutoAttack flags (fra31/auto-attack, autoattack/checks.py)"


@dataclass(frozen=True)
class Check:
    """One sanity check: its ``rule``, ``threshold`` and ``source`` as stated to the user,
    its ``severity`` (``error``: the evaluation is unreliable; ``warning``: look closer),
    the ``function`` that finds its flags, and the columns it needs (``summary_columns``,
    ``records_columns``; ``probes``: it reads the model probes)."""

    rule: str
    threshold: str
    source: str
    function: Callable[[Frames], list[Finding]]
    severity: Severity = "warning"
    summary_columns: tuple[str, ...] = ()
    records_columns: tuple[str, ...] = ()
    probes: bool = False

    def applies(self, frames: Frames) -> bool:
        """Whether ``frames`` have what this check reads."""
        if self.probes and frames.probes is None:
            return False
        if self.records_columns and (
            frames.records.empty or not set(self.records_columns) <= set(frames.records.columns)
        ):
            return False
        return not frames.summary.empty and set(self.summary_columns) <= set(frames.summary.columns)


_IDENT = ("cell_key", "model", "attack", "kind", "norm", "eps", "targeted", "threat_model")
_PER_SAMPLE = ("cell_key", "model", "attack", "kind", "norm", "eps", "sample", "correct", "success_at_eps")
_PROBE_TEXT: dict[str, tuple[str, str, str, Severity]] = {
    "zero_gradients": (
        "some sample's loss gradient is exactly zero in every component",
        "any sample",
        f"{PINTOR}, I1; {AUTOATTACK}, zero gradients",
        "error",
    ),
    "randomness": (
        "repeated forward passes of one batch give different predictions or logits",
        "logits differ by > 1e-4 (L2-normalized)",
        f"{AUTOATTACK}, randomness; {CARLINI}, randomized defenses",
        "warning",
    ),
    "batch_size_dependence": (
        "clean predictions change with the batch size",
        "any sample",
        "yaodongyu/TRADES issue 3",
        "error",
    ),
    "softmax_output": (
        "the model outputs probabilities (in [0, 1], rows summing to 1) rather than logits",
        "rows sum to 1 within 1e-5",
        f"{AUTOATTACK}, softmax output",
        "warning",
    ),
}

#: Every sanity check by name (the table's ``check`` column), in the order they run.
CHECKS: dict[str, Check] = {
    "single_step_beats_iterative_samples": Check(
        "a single-step attack (fgsm, fgm) broke samples an iterative white-box attack (pgd, bim, mim, "
        "apgd, ddn) did not, on the same model, norm, eps, targeting, seed and data",
        "any sample",
        f"{CARLINI}, §5.3: iterative attacks must beat single-step ones, per sample",
        att.single_step_beats_iterative_samples,
        records_columns=_PER_SAMPLE,
    ),
    "single_step_beats_iterative_rate": Check(
        "a single-step attack's success rate is above an iterative attack's (same setting)",
        f"two-proportion test p < {att.ALPHA:g} (compare_rates)",
        f"{CARLINI}, §5.3",
        att.single_step_beats_iterative_rate,
        "error",
        records_columns=_PER_SAMPLE,
    ),
    "success_not_monotone_in_eps": Check(
        "a fixed-budget attack's robust accuracy at a larger eps is above its lowest at a smaller eps "
        "(same model, attack, library and settings)",
        f"two-proportion test p < {att.ALPHA:g} (compare_rates)",
        f"{CARLINI}, §5.4: success must increase with the budget",
        att.success_not_monotone,
        "error",
        summary_columns=(*_IDENT, "n", "n_correct", "robust_accuracy"),
    ),
    "accuracy_above_chance_at_large_eps": Check(
        "a white-box attack's robust accuracy at its curve's largest eps is above random guessing, "
        "max(1/K, share of the most frequent label), when that eps is large: L-inf eps >= "
        f"{att.LARGE_LINF_SHARE:g} x (high - low) of the bounds, or eps >= large_eps[norm] given",
        f"guessing + {att.CHANCE_TOLERANCE:g}",
        f"{CARLINI}, §5.4: with a large enough budget accuracy must fall to random guessing",
        att.accuracy_above_chance,
        "error",
        summary_columns=(*_IDENT, "n", "n_correct", "robust_accuracy"),
    ),
    "minimum_norm_below_100": Check(
        "a white-box minimum-norm attack (not jsma, bounded by gamma) left initially correct samples "
        "not adversarial without a bound",
        "success < 100 % (any sample)",
        f"{PINTOR}, I6 unconstrained attack failure; {CARLINI}, §5.4",
        mn.minimum_norm_below_100,
        "error",
        summary_columns=(*_IDENT, "n_correct", "success_rate"),
    ),
    "minimum_norm_dominated": Check(
        "a white-box minimum-norm attack's robust accuracy over its per-sample distances is nowhere "
        "below another attack's on the same model, norm, targeting, seed and samples, and covers "
        "little of the area between no attack and the other's curve (local_optimality against it)",
        f"local optimality against the other < {mn.DOMINANCE_OPTIMALITY:g}",
        "AttackBench (Cinà et al. 2024), optimality of minimum-norm attacks",
        mn.minimum_norm_dominated,
        records_columns=(*_PER_SAMPLE, "success", "l0", "l1", "l2", "linf"),
    ),
    "weaker_access_beats_white_box_samples": Check(
        "a black-box, transfer or random-noise (attack noise) cell broke samples that no white-box "
        "cell broke on the same model, norm, eps, targeting, seed and data",
        "any sample",
        f"{CARLINI}, §5.2/§5.6: weaker access and noise must succeed less, per example",
        att.weaker_access_beats_white_box_samples,
        records_columns=(*_PER_SAMPLE, "threat_model"),
    ),
    "weaker_access_beats_white_box_rate": Check(
        "a black-box, transfer or random-noise cell's success rate at eps is above every white-box "
        "cell's on the same model, norm, eps and targeting (the summary's beats_white_box)",
        "any difference (AutoAttack: Square's robust accuracy > 0.002 below the others)",
        f"{CARLINI}, §5.2; {AUTOATTACK}, Square beats the white-box attacks",
        att.weaker_access_beats_white_box_rate,
        "error",
        summary_columns=(*_IDENT, "status", "success_rate_at_eps"),
    ),
    **{
        f"probe_{name}": Check(
            rule,
            threshold,
            source,
            runs.probe_check(name),
            severity,
            summary_columns=("cell_key", "model"),
            probes=True,
        )
        for name, (rule, threshold, source, severity) in _PROBE_TEXT.items()
    },
    "probe_other": Check(
        "a model probe not listed above flagged the model",
        "the probe's own",
        "the probe's own",
        runs.probe_check(None),
        summary_columns=("cell_key", "model"),
        probes=True,
    ),
    "convergence_gain": Check(
        "a convergence cell (doubled steps or restarts) broke more of the same samples than its base "
        "cell (check == 'convergence', base_cell_key)",
        f"> {runs.CONVERGENCE_MIN_SAMPLES} sample and > {runs.CONVERGENCE_MIN_GAIN:.0%} of them",
        f"{CARLINI}, §5.3: doubling iterations or restarts must not raise success",
        runs.convergence_gain,
        "error",
        summary_columns=("cell_key", "model", "norm", "check", "base_cell_key"),
        records_columns=_PER_SAMPLE,
    ),
    "incomplete_optimization": Check(
        "attacked samples that failed with the loss still falling at the end (records' "
        "incomplete_optimization)",
        f"> {runs.INCOMPLETE_SHARE:.0%} of the attacked samples",
        f"{PINTOR}, I4 incomplete optimization",
        runs.incomplete_optimization,
        records_columns=(*_PER_SAMPLE, "success", "incomplete_optimization"),
    ),
    "silent_success": Check(
        "the attack passed an adversarial point but returned a non-adversarial one (records' silent_success)",
        "any sample",
        f"{PINTOR}, I3 silent success",
        runs.silent_success,
        records_columns=(*_PER_SAMPLE, "silent_success"),
    ),
    "library_disagreement": Check(
        "two libraries running one attack setting disagree on which samples they break "
        "(library_agreement, with its verdict)",
        f"success agreement < {runs.MIN_AGREEMENT:g}",
        "sheatsley/attacks (identity across frameworks); advharness library_agreement",
        runs.library_disagreement,
        records_columns=(*_PER_SAMPLE, "library", "success", "l0", "l1", "l2", "linf"),
    ),
    "defense_over_credited": Check(
        "on a defended model, adaptive (BPDA / EOT), black-box or transfer attacks break a larger "
        "share of the samples than all its non-adaptive white-box attacks together (per-sample worst "
        "case of each category, same norm, eps, targeting and seed)",
        f"two-proportion test p < {dfn.ALPHA:g} (compare_rates)",
        "Athalye et al. 2018, Obfuscated Gradients Give a False Sense of Security; Tramer et al. 2020, "
        f"On Adaptive Attacks to Adversarial Example Defenses; {CARLINI}, §5.2",
        dfn.over_credited,
        "error",
        summary_columns=(*_IDENT, "defended_model", "adaptive", "status"),
        records_columns=_PER_SAMPLE,
    ),
}


def sanity_checks(
    summary: pd.DataFrame,
    records: pd.DataFrame | None,
    probes: pd.DataFrame | None = None,
    *,
    large_eps: Mapping[str, float] | None = None,
    checks: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Run the sanity checks (``checks``: names from :data:`CHECKS`, default all) over a
    run's ``summary`` and ``records`` (their ``ok`` cells) and the model ``probes`` (rows
    ``model``, ``probe``, ``flagged``, ``value``, ``threshold``, ``rule``, ``source``; None
    or empty: the probe checks report nothing). ``large_eps``: the radius by norm from which
    on an eps counts as large (default: L-inf from half the input range).

    One row per flag (:data:`COLUMNS`): ``check``, ``severity``, ``model``, ``norm``, ``eps``
    (NaN where none), ``cell_keys`` (a tuple: the cells flagged), ``reference_keys`` (a
    tuple: the cells they were compared with, e.g. the FGSM that beat a flagged PGD),
    ``samples`` (a tuple of sample numbers, empty for a flag on a rate), ``value``
    (what was measured), ``threshold``, ``rule``, ``source``, ``message``. Empty (with the
    columns) on a sound evaluation.
    """
    wanted = list(CHECKS) if checks is None else list(checks)
    unknown = [c for c in wanted if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown checks {unknown}; known: {', '.join(CHECKS)}")
    frames = prepare(summary, records, probes, large_eps)
    rows = []
    for name in wanted:
        check = CHECKS[name]
        if not check.applies(frames):
            continue
        for f in check.function(frames):
            rows.append(
                {
                    "check": name,
                    "severity": f.severity or check.severity,
                    "model": f.model,
                    "norm": f.norm,
                    "eps": f.eps,
                    "cell_keys": f.cell_keys,
                    "reference_keys": f.references,
                    "samples": f.samples,
                    "value": f.value,
                    "threshold": f.threshold or check.threshold,
                    "rule": f.rule or check.rule,
                    "source": f.source or check.source,
                    "message": f.message,
                }
            )
    return pd.DataFrame(rows, columns=list(COLUMNS))


def checks_by_cell(flags: pd.DataFrame) -> dict[str, list[str]]:
    """The names of the checks that flagged each cell (its ``cell_keys``, not the
    ``reference_keys``) of a :func:`sanity_checks` table, in the table's order."""
    out: dict[str, list[str]] = {}
    for name, keys in zip(flags["check"], flags["cell_keys"], strict=True):
        for key in keys:
            mine = out.setdefault(str(key), [])
            if name not in mine:
                mine.append(str(name))
    return out
