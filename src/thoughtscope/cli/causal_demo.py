"""The demo's small causal runs: counterfactual patching, thought-to-thought effects and
steering on the toy model, each a run folder in the sweep's ``causal/`` folder, whose
report shows them (:func:`thoughtscope.report.causal.causal_section`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import typer

from thoughtscope.analyses.effects import EffectsConfig, run_effects
from thoughtscope.analyses.patching import PatchConfig, PatchInputError, run_patching
from thoughtscope.analyses.steering import SteerConfig, run_steering
from thoughtscope.cli.app import fail
from thoughtscope.problems.sources import load_problems
from thoughtscope.report.causal import CAUSAL_DIR, write_causal_report
from thoughtscope.results.store import read_manifest

DEMO_LIMIT = 60
"""Problems of the sweep's data each causal run uses (the first ones)."""
DEMO_N_BOOT = 500
"""Bootstrap resamples of the causal runs' summaries (the sweep's statistics use more)."""


def demo_causal(model: Any, run_dir: Path, *, progress: bool) -> dict[str, Path]:
    """Runs the three small causal analyses on the data of the sweep in ``run_dir``,
    each into ``run_dir/causal/<name>``, with statistics and a report; returns the
    reports by name.

    * ``patch``: counterfactual twins (one number changed), the latent site and the last
      block, each thought alone and all six;
    * ``effects``: each thought zeroed at the latent site, its effect on later thoughts;
    * ``steer``: the difference of means of the problems giving the most common answer
      (18 on the demo's data) and the others, added at every thought of the latent site
      with α = 1, 4, 8.
    """
    data = read_manifest(run_dir)["data"]["spec"]
    last = model.num_layers - 1
    folder = run_dir / CAUSAL_DIR
    answers = Counter(p.answer for p in load_problems(data).problems[:DEMO_LIMIT])
    target = answers.most_common(1)[0][0]
    reports: dict[str, Path] = {}

    def done(name: str, n_rows: int, seconds: float, extra: str = "") -> None:
        reports[name] = write_causal_report(folder / name, n_boot=DEMO_N_BOOT)
        typer.echo(f"{name}: {n_rows} rows in {seconds:.1f} s{extra}; report: {reports[name]}")

    try:
        patched = run_patching(
            model,
            PatchConfig(
                data=data, pairs="counterfactual", sites=f"latent+block:{last}", limit=DEMO_LIMIT
            ),
            folder / "patch",
            model_spec="toy",
            progress=progress,
        )
        done(
            "patch",
            patched.n_rows,
            patched.seconds,
            f"; self-patch check: {patched.self_patch_identical} of {patched.self_patch_rows} "
            "rows identical to the baseline",
        )
        effects = run_effects(
            model,
            EffectsConfig(data=data, sites="latent", ablations="zero", limit=DEMO_LIMIT),
            folder / "effects",
            model_spec="toy",
            progress=progress,
        )
        done("effects", effects.n_rows, effects.seconds)
        steered = run_steering(
            model,
            SteerConfig(data=data, target_value=target, alphas="1,4,8", limit=DEMO_LIMIT),
            folder / "steer",
            model_spec="toy",
            progress=progress,
        )
        done("steer", steered.n_rows, steered.seconds)
    except PatchInputError as error:
        fail(str(error), error.option)
    return reports
