"""How a black-box cell hands its batch to the library: ``query_mode`` and its defaults.

``per-sample``: one library call per attacked sample, so every row the oracle answers belongs
to that sample by construction. ``batched``: one library call per chunk of ``batch_size``
attacked samples; the ledger attributes every answered row to its sample (see
:mod:`advharness.judging.batched`). A spec that leaves ``query_mode`` out gets
:func:`default_query_mode` for its library and attack: ``batched`` unless the pair is listed
in :data:`PER_SAMPLE_BY_DEFAULT`, with the reason.
"""

from __future__ import annotations

from typing import Literal

QueryMode = Literal["batched", "per-sample"]
QUERY_MODES: tuple[str, ...] = ("batched", "per-sample")
#: How a batched ledger attributes rows: by the distance to the originals, or by position.
Attribution = Literal["distance", "position"]

_LOOPS = (
    "{lib} runs this attack one sample at a time inside its own call ({where}), so one call "
    "for the batch saves nothing"
)
_FAR = (
    "; its initialisation queries random images far from every original, which no distance "
    "rule attributes to the right sample"
)

#: (library, attack) pairs a black-box cell runs per sample unless the spec says otherwise.
PER_SAMPLE_BY_DEFAULT: dict[tuple[str, str], str] = {
    ("art", "hsj"): _LOOPS.format(lib="ART", where="hop_skip_jump.py:195: a loop over x") + _FAR,
    ("art", "boundary"): _LOOPS.format(lib="ART", where="boundary.py:162: a loop over x") + _FAR,
    ("art", "signopt"): _LOOPS.format(lib="ART", where="sign_opt.py:198: a loop over x") + _FAR,
    ("art", "geoda"): _LOOPS.format(lib="ART", where="geometric_decision_based_attack.py") + _FAR,
    ("art", "zoo"): _LOOPS.format(lib="ART", where="the adapter passes batch_size=1"),
    ("art", "simba"): _LOOPS.format(lib="ART", where="simba.py:148: a loop over x"),
    ("art", "pixel"): _LOOPS.format(lib="ART", where="pixel_threshold.py:194: a loop over x"),
    ("art", "threshold"): _LOOPS.format(lib="ART", where="pixel_threshold.py:194: a loop over x"),
    ("cleverhans", "spsa"): _LOOPS.format(lib="CleverHans", where="torch spsa.py:75: a loop over x"),
    ("cleverhans", "hsj"): _LOOPS.format(
        lib="CleverHans", where="torch hop_skip_jump_attack.py:201: a loop over x"
    )
    + _FAR,
}

_FOOLBOX_POSITIONAL = (
    "every Foolbox attack evaluates the whole batch it was given at each step "
    "(is_adversarial(x) on one row per input, in input order: base.py:459-463)"
)
#: Pairs whose every query holds exactly one row per input of the call, in input order: a
#: batched ledger attributes their rows by position (exact, and far rows too, such as an
#: initialisation's uniform noise), and refuses a query of any other size.
POSITIONAL: dict[tuple[str, str], str] = {
    ("foolbox", a): _FOOLBOX_POSITIONAL
    for a in (
        "hsj",
        "boundary",
        "gaussian_blur",
        "salt_and_pepper",
        "contrast",
        "blended_noise",
        "noise",
    )
}


_LOCKSTEP = (
    "Foolbox runs {what} in lockstep over the samples of a call: a sample is queried at every "
    "step until the call's last sample is done, so it spends more queries per iteration than "
    "alone and, at a budget or query level, reaches larger norms than a per-sample cell "
    "(blackbox_mnist, Keras, {level} queries: median L2 {batched} batched vs {alone} per "
    "sample); query_mode: per-sample measures the attack's own query efficiency"
)
#: Batched pairs whose per-sample query efficiency differs from the attack's own (a fact of
#: the library's batching, not of the accounting): said on every such batched cell.
LOCKSTEP: dict[tuple[str, str], str] = {
    ("foolbox", "hsj"): _LOCKSTEP.format(
        what="HopSkipJump's step-size and binary searches", level="1,000", batched="4.93", alone="2.53"
    ),
    ("foolbox", "boundary"): _LOCKSTEP.format(
        what="the Boundary attack (its steps until every source step has converged)",
        level="100",
        batched="15.0",
        alone="10.3",
    ),
}


def default_query_mode(library: str, attack: str) -> QueryMode:
    """The query mode of a black-box ``library`` ``attack`` cell whose spec sets none."""
    return "per-sample" if (library, attack) in PER_SAMPLE_BY_DEFAULT else "batched"


def attribution(library: str, attack: str) -> Attribution:
    """How a batched ledger attributes ``library``'s ``attack`` rows to samples."""
    return "position" if (library, attack) in POSITIONAL else "distance"
