"""For operators: the coordinating server of a sync federation (agent.server, loaded only to serve)."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli.common import SectionedGroup


@click.group(cls=SectionedGroup)
def coordinator() -> None:
    """The coordinating server of federated sync, run by whoever hosts a federation.

    \b
    Examples:
      ownrec coordinator serve --state-dir ./coord          # SQLite in ./coord, TLS on 0.0.0.0:8443
      ownrec coordinator serve --db postgresql://u@h/db --workers 4 --state-dir ./coord

    The state directory holds the release-signing key, the self-signed TLS certificate and
    coordinator-pin.json: what a client pins to join (URL, signing key, certificate).
    """


@coordinator.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True)
@click.option("--db", "db_url", help="sqlite:///path or postgresql://... (default: SQLite in the state directory).")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("coordinator"),
              show_default=True, help="Signing key, TLS certificate and the pin file for clients.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="uvicorn worker processes (more than one needs PostgreSQL to scale).")
@click.option("--items", "items_file", type=click.Path(dir_okay=False, path_type=Path),
              help="The shared item vocabulary, one source:external_id per line (default: MovieLens-100K).")
@click.option("--prior", "prior_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Start from a public prior (`ownrec prior export`): its layout and vector become the first "
                   "release, so the federation refines it. Only read when the state is new.")
@click.option("--min-cohort", type=click.IntRange(3), default=20, show_default=True)
@click.option("--max-cohort", type=click.IntRange(3), default=100, show_default=True)
@click.option("--checkin-window", type=float, default=60.0, show_default=True, help="Seconds to gather a cohort.")
@click.option("--stage-timeout", type=float, default=60.0, show_default=True, help="Seconds per stage.")
@click.option("--clip-norm", type=float, default=1.0, show_default=True)
@click.option("--noise-multiplier", type=float, default=1.0, show_default=True)
@click.option("--delta", "target_delta", type=float, default=1e-5, show_default=True)
@click.option("--epsilon-budget", type=float, default=10.0, show_default=True,
              help="No round starts whose release would take epsilon above this.")
@click.option("--server-learning-rate", type=float, default=1.0, show_default=True,
              help="Each release moves the shared adapter by this times the cohort's average delta.")
@click.option("--item-learning-rate", type=float, default=1.0, show_default=True,
              help="The item biases and residuals move this many times further than B_g. Above 1 it pays only "
                   "when the noise is small next to each item's raters: large cohorts (EVALUATION.md, \"The item "
                   "rate\").")
@click.option("--withhold-noisy/--release-noisy", "withhold_noisy", default=True, show_default=True,
              help="Withhold a round's average when its noise is expected to be larger than any signal it could "
                   "carry (norm C): such a release would move every member's shared adapter by noise alone. The "
                   "reason is logged and sent to the round's clients.")
@click.option("--shrink-noise/--no-shrink-noise", "shrink_noise", default=True, show_default=True,
              help="Shrink a noised average towards zero, B_g, the item part and each item's row apart, as far as "
                   "its known noise says it carries no signal (post-processing: no privacy cost).")
@click.option("--log-level", default="info", show_default=True)
def coordinator_serve(host: str, port: int, db_url: str | None, state_dir: Path, workers: int,
                      items_file: Path | None, prior_file: Path | None, min_cohort: int, max_cohort: int, checkin_window: float,
                      stage_timeout: float, clip_norm: float, noise_multiplier: float, target_delta: float,
                      epsilon_budget: float, server_learning_rate: float, item_learning_rate: float,
                      withhold_noisy: bool, shrink_noise: bool, log_level: str) -> None:
    """Serve the coordinator over HTTPS until stopped."""
    from agent.server.app import serve

    state_dir = state_dir.resolve()
    config = {
        "state_dir": str(state_dir), "db": db_url or f"sqlite:///{state_dir / 'coordinator.sqlite3'}",
        "items_file": str(items_file.resolve()) if items_file else None,
        "prior": str(prior_file.resolve()) if prior_file else None,
        "settings": {"min_cohort": min_cohort, "max_cohort": max_cohort, "checkin_window": checkin_window,
                     "stage_timeout": stage_timeout, "clip_norm": clip_norm, "noise_multiplier": noise_multiplier,
                     "target_delta": target_delta, "epsilon_budget": epsilon_budget,
                     "server_learning_rate": server_learning_rate, "item_learning_rate": item_learning_rate,
                     "withhold_noisy": withhold_noisy, "shrink_noise": shrink_noise},
    }
    try:
        serve(config, host, port, workers=workers, log_level=log_level)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
