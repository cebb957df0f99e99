"""Opt-in federated sync, on this device: join a federation, take part or not, and see what left and the
privacy it spent (agent.core.sync.consent, through the facade)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click

from agent.cli.common import SectionedGroup, emit_json, fail_cleanly, open_agent
from agent.core.api import HOW_TO_JOIN, WHAT_LEAVES, LedgerRow, PrivacyTotal, SyncSetupError


def _sync_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Sync set-up errors (a bad pin file) as one clear line; nothing was changed when one is raised."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except SyncSetupError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


@click.group(cls=SectionedGroup)
def sync() -> None:
    """Opt-in federated sync: improve the shared adapter, or stay offline (the default).

    \b
    Examples:
      ownrec sync join coordinator-pin.json --token CODE   # pin the coordinator, with your enrolment code
      ownrec sync on                          # take part: rounds run while the app is open and idle
      ownrec sync log                         # every upload, the privacy it spent, each new release's check
      ownrec sync off                         # stop at once (a round in flight is cancelled)

    With sync on, only clipped, noised and masked changes to the shared adapter leave this device,
    encrypted, to the pinned coordinator; never your ratings, items, traits or personal adapter.
    With sync off, ownrec opens no network connection at all. See docs/threat-model.md.
    """


@sync.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print an object with enabled, coordinator and total.")
@fail_cleanly
def sync_status(as_json: bool) -> None:
    """Whether sync is on, the pinned coordinator, and the privacy spent so far."""
    found = open_agent().sync_status()
    if as_json:
        emit_json(found.as_dict())
        return
    click.echo(f"sync: {'on' if found.enabled else 'off'}" + ("" if found.asked else " (never asked)"))
    if found.pin_problem:
        click.echo(f"coordinator: {found.pin_problem}")
    elif found.coordinator_url is None:
        click.echo(f"coordinator: none pinned ({HOW_TO_JOIN})")
    else:
        click.echo(f"coordinator: {found.coordinator_host}, release-signing key {found.key_fingerprint}")
        if found.enrolment_pending:
            click.echo("enrolment: a code waits to be sent with this device's first check-in")
        if found.blocked is not None:
            click.echo(("no rounds until you join again: " if found.blocked_for_good else
                        "the last round could not form: ") + found.blocked)
        if found.in_use is not None:
            click.echo(f"shared adapter in use: {found.in_use}")
        click.echo(_privacy_line(found.total))


@sync.command("join")
@click.argument("pin_file", type=click.Path(dir_okay=False, path_type=Path), metavar="PIN_FILE")
@click.option("--token", help="The enrolment code from the federation's operator (`ownrec coordinator enrol`).")
@click.option("--token-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A file holding the enrolment code (`ownrec coordinator enrol --out`).")
@fail_cleanly
@_sync_errors
def sync_join(pin_file: Path, token: str | None, token_file: Path | None) -> None:
    """Pin a coordinator: PIN_FILE is the coordinator-pin.json that `ownrec coordinator serve` writes; the
    coordinator admits this device only with an enrolment code from its operator.

    Nothing is sent now: the code goes with this device's first check-in, once sync is on."""
    from agent.core.sync import consent

    if token is not None and token_file is not None:
        raise click.UsageError("give the enrolment code with --token or --token-file, not both")
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise click.ClickException(f"cannot read the enrolment code from {token_file}: {error}") from None
    consent.read_pin(pin_file)  # a pin file that cannot be used is refused before the database is opened
    if token is not None:
        consent.check_enrolment_code(token)
    agent = open_agent()
    pin = agent.join_sync(pin_file, token)
    enabled = agent.sync_enabled()
    click.echo(f"pinned the coordinator at {pin.url}\n  release-signing key {consent.fingerprint(pin.signing_public_key)}")
    click.echo("  enrolment code kept: it goes with this device's first check-in" if token is not None else
               "  no enrolment code: the coordinator admits only enrolled devices (--token CODE from its operator)")
    click.echo("sync is on: rounds run while the app is open and idle" if enabled
               else "sync is still off: `ownrec sync on` to take part")


@sync.command("on")
@fail_cleanly
@_sync_errors
def sync_on() -> None:
    """Take part in the federation (rounds run in the app, when it is idle)."""
    agent = open_agent()
    agent.set_sync(True, "cli")
    click.echo("sync on: " + WHAT_LEAVES)
    if agent.sync_pin() is None:
        click.echo(f"no coordinator is pinned yet, so nothing is sent: {HOW_TO_JOIN}.")


@sync.command("off")
@fail_cleanly
def sync_off() -> None:
    """Stop taking part; a round in flight in the app is cancelled within seconds."""
    open_agent().set_sync(False, "cli")
    click.echo("sync off: ownrec opens no network connection (`ownrec sync on` to take part again)")


@sync.command("log")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print an object with uploads (the ledger rows) and events (rounds without a release, and "
                   "each decision on a new release with its figures).")
@fail_cleanly
def sync_log(limit: int, as_json: bool) -> None:
    """Every upload, newest first, and the privacy it spent; then what happened to rounds and releases.

    Each upload: its round, bytes, pre-clip norm, C, the noise this device added, ε as the coordinator
    reports it and as this device computes it, and this round's ε alone: with an honest cohort, and in the
    worst case (every other member fake, this device's noise the only noise). Each event: everything a
    contact with the coordinator sent (key registration and check-ins included), a round that could not
    form or was not released (and why), or this device's check of a new release against your latest likes
    (held out): adopted, blended or kept out, with its figures.
    """
    from agent.core.sync import consent

    agent = open_agent()
    rows = agent.sync_log(limit)
    events = agent.sync_events(limit)
    if as_json:
        emit_json({"uploads": consent.ledger_as_json(rows), "events": [asdict(e) for e in events]})
        return
    _print_uploads(rows, {key: agent.sync_privacy(key) for key in dict.fromkeys(row.coordinator_key for row in rows)})
    if events:
        click.echo("\nwhat was sent, rounds and releases, newest first:")
        for event in events:
            when = datetime.fromtimestamp(event.at).strftime("%Y-%m-%d %H:%M")
            click.echo(f"{when:16}  {event.message}")


def _print_uploads(rows: list[LedgerRow], totals: dict[str, PrivacyTotal]) -> None:
    from agent.core.sync import consent

    if not rows:
        click.echo("no uploads yet: nothing derived from your data has left this device")
        return
    click.echo(f"{'when':16}  {'round':8}  {'state':9}  {'bytes':>9}  {'norm':>6}  {'C':>5}  {'noise σ':>8}  "
               f"{'ε server':>8}  {'ε here':>7}  {'round ε honest/worst':>20}")
    for row in rows:
        when = datetime.fromtimestamp(row.at).strftime("%Y-%m-%d %H:%M")
        alone = f"{_epsilon(row.epsilon_round_honest)}/{_epsilon(row.epsilon_round_worst)}"
        click.echo(f"{when:16}  {row.round:8}  {row.state:9}  {row.bytes_sent:>9,}  {row.pre_clip_norm:>6.3f}  "
                   f"{row.clip_norm:>5.2f}  {row.noise_std:>8.4f}  {_epsilon(row.epsilon_server):>8}  "
                   f"{_epsilon(row.epsilon_client):>7}  {alone:>20}")
    for key, total in totals.items():
        click.echo(f"coordinator {consent.fingerprint(bytes.fromhex(key))}: " + _privacy_line(total))


def _privacy_line(total: PrivacyTotal | None) -> str:
    if total is None or total.counted_rounds == 0:
        uploads = "" if total is None or not total.uploads else \
            f" ({total.uploads} uploads, each to a round the coordinator aborted unsummed)"
        return f"privacy spent: none yet{uploads}"
    server = "" if total.epsilon_server is None else f"; the coordinator reports ε = {total.epsilon_server:.2f}"
    return (f"privacy spent: ε = {total.epsilon_client:.2f} at δ = {total.delta:g} over {total.rounds_phrase()} "
            f"(computed here{server})")


def _epsilon(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
