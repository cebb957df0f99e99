"""For operators: the coordinating server of a sync federation (agent.server, loaded only to serve)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from agent.cli.common import SectionedGroup


@click.group(cls=SectionedGroup)
def coordinator() -> None:
    """The coordinating server of federated sync, run by whoever hosts a federation.

    \b
    Examples:
      ownrec coordinator serve --state-dir ./coord          # SQLite in ./coord, TLS on 0.0.0.0:8443
      ownrec coordinator serve --db postgresql://u@h/db --workers 4 --state-dir ./coord
      ownrec coordinator enrol --devices 1 --expires 7d     # a code for one device to join with
      ownrec coordinator tokens                             # every code's id, use and expiry
      ownrec coordinator revoke 3f9a1c2e                    # no more devices with it (nor check-ins)

    The state directory holds the release-signing key, the self-signed TLS certificate and
    coordinator-pin.json: what a client pins to join (URL, signing key, certificate). Only devices
    enrolled with a code from `enrol` are admitted (`ownrec sync join PIN_FILE --token CODE`).
    """


@coordinator.command("serve")
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=8443, show_default=True)
@click.option("--public-url", help="The address clients reach this coordinator at, https://NAME[:PORT]: the pin "
              "file gives it and the TLS certificate covers NAME. Needed when --host is 0.0.0.0 (a container, NAT): "
              "without it the pin says https://127.0.0.1:PORT.")
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
              help="Per device: a device takes part in no round that would take its epsilon (one step per release "
                   "period its update was summed in) above this.")
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
              help="Shrink a noised average towards zero as far as its known noise says it carries no signal: "
                   "B_g, and when serving from a public prior (--prior) also the item part and each item's row "
                   "apart (post-processing: no privacy cost).")
@click.option("--max-round-epsilon", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="The device floor to make room for: devices may add enough noise of their own that a round costs "
                   "them at most this epsilon even if every other member were fake; the noise figures (what is "
                   "withheld, what a release says) count that noise. 0: room for the distributed share only (a "
                   "device whose floor needs more refuses the round).")
@click.option("--registrations-per-hour", type=click.IntRange(1), default=20, show_default=True,
              help="Device registrations allowed per client address and per enrolment code, per hour.")
@click.option("--checkins-per-hour", type=click.IntRange(1), default=600, show_default=True,
              help="Check-ins allowed per client address, and per enrolment code for each device it may enrol.")
@click.option("--max-concurrent-rounds", type=click.IntRange(1), default=4, show_default=True,
              help="Cohorts running at once within a --release-period (1: one after another). More use more "
                   "workers (--workers, PostgreSQL).")
@click.option("--release-period", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Seconds after the first cohort on a release opens during which more cohorts open; then one "
                   "release combines their sums. Past it, a period whose average would be withheld (--withhold-noisy) "
                   "takes more cohorts until it would not. 0: a release as soon as the cohorts summed carry more "
                   "signal than noise (with --release-noisy: each cohort on its own, one after another).")
@click.option("--keep-releases", type=click.IntRange(1), default=10, show_default=True,
              help="Release bodies kept in the database (older ones are deleted; devices fetch only the latest).")
@click.option("--log-level", default="info", show_default=True)
@click.option("--log-format", type=click.Choice(["auto", "json", "text"]), default="auto", show_default=True,
              help="json: one JSON object a line (round events, refusals, uvicorn's lines); text: for reading; auto: "
                   "text on a terminal, json otherwise (a journal, a container log, a file).")
@click.option("--metrics-token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="GET /metrics then needs `Authorization: Bearer <the file's first line>` (without it /metrics is "
                   "open to anyone who can reach the port; /healthz always is).")
def coordinator_serve(host: str, port: int, public_url: str | None, db_url: str | None, state_dir: Path, workers: int,
                      items_file: Path | None, prior_file: Path | None, min_cohort: int, max_cohort: int, checkin_window: float,
                      stage_timeout: float, clip_norm: float, noise_multiplier: float, target_delta: float,
                      epsilon_budget: float, server_learning_rate: float, item_learning_rate: float,
                      withhold_noisy: bool, max_round_epsilon: float, registrations_per_hour: int,
                      checkins_per_hour: int, shrink_noise: bool, max_concurrent_rounds: int, release_period: float,
                      keep_releases: int, log_level: str, log_format: str, metrics_token_file: Path | None) -> None:
    """Serve the coordinator over HTTPS until stopped."""
    from agent.server.app import serve

    state_dir = state_dir.resolve()
    config = {
        "state_dir": str(state_dir), "db": db_url or f"sqlite:///{state_dir / 'coordinator.sqlite3'}",
        "items_file": str(items_file.resolve()) if items_file else None,
        "prior": str(prior_file.resolve()) if prior_file else None,
        "public_url": public_url,
        "metrics_token_file": str(metrics_token_file.resolve()) if metrics_token_file else None,
        "settings": settings_from(click.get_current_context().params),
    }
    try:
        serve(config, host, port, workers=workers, log_level=log_level, log_format=log_format)
    except ValueError as error:
        raise click.ClickException(str(error)) from None


SETTING_OPTIONS = ("min_cohort", "max_cohort", "checkin_window", "stage_timeout", "clip_norm", "noise_multiplier",
                   "target_delta", "epsilon_budget", "server_learning_rate", "item_learning_rate", "withhold_noisy",
                   "max_round_epsilon", "registrations_per_hour", "checkins_per_hour", "shrink_noise",
                   "max_concurrent_rounds", "release_period", "keep_releases")


def settings_from(options: dict[str, Any]) -> dict[str, Any]:
    """The `CoordinatorSettings` fields from `serve`'s option values (by parameter name)."""
    settings = {name: options[name] for name in SETTING_OPTIONS}
    settings["max_round_epsilon"] = settings["max_round_epsilon"] or None  # 0: no room for a device floor
    return settings


def serve_default_settings(**changes: Any) -> dict[str, Any]:
    """The settings `coordinator serve` runs with when given no options, with `changes` (parameter names)."""
    defaults = {param.name: param.default for param in coordinator_serve.params}
    unknown = set(changes) - set(SETTING_OPTIONS)
    if unknown:
        raise click.BadParameter(f"no coordinator setting {', '.join(sorted(unknown))} (known: "
                                 f"{', '.join(SETTING_OPTIONS)})")
    return settings_from({**defaults, **changes})


def _storage_options(fn):
    fn = click.option("--db", "db_url", help="sqlite:///path or postgresql://... (default: SQLite in the state "
                      "directory).")(fn)
    return click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("coordinator"),
                        show_default=True, help="The coordinator's state directory.")(fn)


def _open_storage(state_dir: Path, db_url: str | None):
    from agent.server.state import open_storage

    if db_url is None and not (state_dir / "coordinator.sqlite3").exists():
        raise click.ClickException(f"no coordinator database in {state_dir}: pass the --state-dir (or --db) that "
                                   "`ownrec coordinator serve` uses")
    try:
        return open_storage(db_url or f"sqlite:///{state_dir.resolve() / 'coordinator.sqlite3'}")
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def _when(seconds: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")


@coordinator.command("enrol")
@click.option("--devices", type=click.IntRange(1, 1_000_000), default=1, show_default=True,
              help="How many distinct devices the code may enrol (1: single use).")
@click.option("--expires", default="7d", show_default=True, help="Until when the code enrols devices: 30m, 12h, "
              "7d, 2w. Devices it enrolled stay enrolled.")
@click.option("--note", default="", help="A reminder of whom the code is for (shown by `tokens`).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the code to this file (mode 0600), for `ownrec sync join --token-file`.")
@_storage_options
def coordinator_enrol(devices: int, expires: str, note: str, out_file: Path | None, state_dir: Path,
                      db_url: str | None) -> None:
    """Issue an enrolment code: devices join with it (`ownrec sync join PIN_FILE --token CODE`).

    The code is shown once: only its hash is stored, so a copy of the database enrols nobody."""
    from agent.server import admission

    try:
        lifetime = admission.parse_duration(expires)
    except admission.AdmissionError as error:
        raise click.BadParameter(str(error), param_hint="--expires") from None
    storage = _open_storage(state_dir, db_url)
    try:
        handle = None
        if out_file is not None:  # opened first: a file that cannot be written leaves no code issued
            import os

            try:
                descriptor = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.fchmod(descriptor, 0o600)  # also when the file was there before, with other permissions
            except OSError as error:
                raise click.ClickException(f"cannot write the code to {out_file}: {error.strerror}") from None
            handle = os.fdopen(descriptor, "w")
        code, token = admission.issue_token(storage, devices, lifetime, note)
    finally:
        storage.close()
    if handle is not None:
        with handle:
            handle.write(code + "\n")
    click.echo(code)
    click.echo(f"token {token.token_id}: enrols up to {devices} device{'s' if devices != 1 else ''} until "
               f"{_when(token.expires_at)}" + (f", written to {out_file}" if out_file else ""), err=True)


@coordinator.command("tokens")
@_storage_options
def coordinator_tokens(state_dir: Path, db_url: str | None) -> None:
    """The enrolment codes issued (by id: the codes themselves are not kept), their use and expiry."""
    from agent.server import admission

    storage = _open_storage(state_dir, db_url)
    try:
        tokens = admission.list_tokens(storage)
    finally:
        storage.close()
    if not tokens:
        click.echo("no enrolment codes yet: `ownrec coordinator enrol` issues one")
        return
    click.echo(f"{'id':8}  {'state':7}  {'devices':>9}  {'issued':16}  {'expires':16}  note")
    for token in tokens:
        click.echo(f"{token.token_id:8}  {token.state():7}  {f'{token.devices}/{token.max_devices}':>9}  "
                   f"{_when(token.created_at):16}  {_when(token.expires_at):16}  {token.note}")


@coordinator.command("revoke")
@click.argument("token")
@_storage_options
def coordinator_revoke(token: str, state_dir: Path, db_url: str | None) -> None:
    """Revoke an enrolment code (its id from `tokens`, or the code): it enrols no more devices, and the
    devices it enrolled can no longer check in."""
    from agent.server import admission

    storage = _open_storage(state_dir, db_url)
    try:
        revoked = admission.revoke_token(storage, token)
    except admission.AdmissionError as error:
        raise click.ClickException(str(error)) from None
    finally:
        storage.close()
    click.echo(f"revoked token {revoked.token_id}: it enrols no more devices"
               + (f", and the {revoked.devices} device(s) it enrolled can no longer check in" if revoked.devices else ""))
