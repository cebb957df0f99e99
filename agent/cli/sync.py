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


# `ownrec sync run` exit codes, for scripts, cron and the service units (packaging/systemd, packaging/launchd).
EXIT_RELEASED = 0
EXIT_FAILED = 1  # an error this device could not act on (a network error, a damaged store)
EXIT_OFF = 3  # sync is off (or was turned off during the round): nothing was sent
EXIT_NOT_JOINED = 4  # no usable coordinator pin
EXIT_NOT_NOW = 5  # the app is in use, the interval has not passed, or the coordinator's retry time has not come
EXIT_REFUSED = 6  # the coordinator or this device's policy refused the round, or no round could include it
EXIT_NO_RELEASE = 7  # the round ended without a release (withheld, aborted)
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM
RUN_EXIT_CODES = {"released": EXIT_RELEASED, "withheld": EXIT_NO_RELEASE, "aborted": EXIT_NO_RELEASE,
                  "refused": EXIT_REFUSED, "not formed": EXIT_REFUSED, "cancelled": EXIT_OFF, "failed": EXIT_FAILED}
DECISION_EXIT_CODES = {"off": EXIT_OFF, "not_joined": EXIT_NOT_JOINED, "stopped": EXIT_REFUSED, "busy": EXIT_NOT_NOW,
                       "wait": EXIT_NOT_NOW}
FOREVER_RECHECK_SECONDS = 30.0  # --forever re-reads the consent and the pin at least this often


@sync.command("run")
@click.option("--forever", is_flag=True,
              help="Keep going: a round whenever the rules allow, at the coordinator's retry times when it "
                   "refuses one; waits (without a connection) while sync is off or no coordinator is pinned; "
                   "stops when asking the coordinator again cannot help (not enrolled, its budget spent).")
@fail_cleanly
def sync_run(forever: bool) -> None:
    """Run a round now if sync is on, a coordinator is pinned, the app is idle and the interval has passed
    (the rules of the app's scheduler); one line says what happened.

    \b
    Exit codes: 0 a round released; 3 sync is off (nothing sent); 4 no coordinator pinned;
    5 not now (the app is in use, the interval or the coordinator's retry time has not come);
    6 the round was refused (by the coordinator or by this device's policy) or could not form, or no
    round can start with this coordinator until you join again; 7 the round ended
    without a release; 1 another failure; 130 interrupted (Ctrl-C, SIGTERM): a round in flight is
    cancelled and any upload it made stays counted as spent until the coordinator's record settles it.
    """
    import signal
    import time

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # a service manager's stop: like Ctrl-C
    agent = open_agent()
    scheduler = agent.sync_scheduler(in_app=False)
    shown_kind = None
    try:
        while True:
            decision, report = scheduler.run_once()
            code = DECISION_EXIT_CODES.get(decision.kind) if report is None else RUN_EXIT_CODES[report.state]
            if report is not None or decision.kind != shown_kind or not forever:
                total = None if report is None else agent.sync_privacy(decision.pin.signing_public_key.hex())
                click.echo(_run_line(decision, report, total))
                shown_kind = decision.kind
            if not forever:
                raise SystemExit(code)
            after = scheduler.decide()
            if after.kind == "stopped":  # asking again cannot help (client.STOPPING_CODES): its budget spent, ...
                click.echo("stopping: no round can start with this coordinator until you join again "
                           "(`ownrec sync status` says why)", err=True)
                raise SystemExit(code)
            wait = after.wait_seconds
            time.sleep(FOREVER_RECHECK_SECONDS if wait is None else min(max(wait, 0.5), FOREVER_RECHECK_SECONDS))
    except KeyboardInterrupt:
        report = scheduler.last_report
        cancelled = report is not None and report.state == "cancelled"
        click.echo("interrupted" + (f": {report.message}" if cancelled else ""), err=True)
        raise SystemExit(EXIT_INTERRUPTED) from None
    finally:
        agent.close()


def _run_line(decision: Any, report: Any, total: PrivacyTotal | None) -> str:
    """One line for what `sync run` decided or how its round ended; `total`: the ledger's privacy figures
    with this coordinator, after the round."""
    if report is None:
        if decision.kind == "off":
            return "sync is off: nothing was sent (`ownrec sync on` to take part)"
        if decision.kind == "not_joined":
            return f"not joined: {decision.phase}"
        if decision.kind == "stopped":
            return decision.phase
        return f"not now: {decision.phase}"
    # The round's end, then what it cost, then what the device decided about a new release (if it checked).
    adoption = "" if report.adoption is None else f"; {report.adoption}"
    ended = report.message.removesuffix(adoption)
    if report.state in ("refused", "not formed"):
        retry = "" if report.wait_seconds is None else \
            f"; next check-in in {report.wait_seconds:.0f} s (the coordinator asked for {report.retry_after:.0f} s " \
            "or more; refused devices spread out)"
        return f"round {ended}{retry}{adoption}" if report.state == "refused" else \
            f"round not formed: {ended}{retry}{adoption}"
    prefix = {"released": "", "cancelled": "sync turned off: ", "failed": "round failed: "}.get(
        report.state, "round ended without a release: ")
    return f"{prefix}{ended}; {_privacy_line(total)}{adoption}"


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
    if any(row.state == "pending" for row in rows):
        click.echo("pending: this device did not see how the round ended; counted as spent until the coordinator's "
                   "signed record of the round settles it, at the next round")
    for key, total in totals.items():
        click.echo(f"coordinator {consent.fingerprint(bytes.fromhex(key))}: " + _privacy_line(total))


def _privacy_line(total: PrivacyTotal | None) -> str:
    if total is None or total.counted_rounds == 0:
        uploads = "" if total is None or not total.uploads else \
            f" ({total.uploads} uploads, none of them summed by the coordinator)"
        return f"privacy spent: none yet{uploads}"
    server = "" if total.epsilon_server is None else f"; the coordinator reports ε = {total.epsilon_server:.2f}"
    return (f"privacy spent: ε = {total.epsilon_client:.2f} at δ = {total.delta:g} over {total.rounds_phrase()} "
            f"(computed here{server})")


def _epsilon(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"
