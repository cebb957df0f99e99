"""The `ownrec` command line. Every command works on the local data directory only.

Run `ownrec --help`, or `ownrec COMMAND --help`, for the documentation of each command.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from agent import __version__
from agent.core import paths
from agent.core.config import SETTINGS, Config, ConfigError
from agent.core.encoder import EncoderUnavailable
from agent.core.importers import ImportFailed
from agent.core.llm.model import LLMUnavailable
from agent.core.ranker import AdapterError
from agent.core.api import Agent, FeedbackError, LoraTrainingSettings, TraitError
from agent.core.store import StoreError

# Errors a person can act on: shown as one clear line, without a traceback.
EXPECTED_ERRORS: tuple[type[Exception], ...] = (
    EncoderUnavailable, StoreError, ConfigError, AdapterError, FeedbackError, ImportFailed, TraitError, OSError,
    LLMUnavailable,
)


def _fail_cleanly(fn: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except EXPECTED_ERRORS as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def _agent() -> Agent:
    return Agent.open()


def _progress(label: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        if sys.stderr.isatty() or done == total:
            click.echo(f"\r{label}: {done}/{total}", nl=done == total, err=True)

    return report


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))


@click.group(invoke_without_command=True)
@click.version_option(__version__, prog_name="ownrec")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """ownrec: a recommender that lives on your machine and learns only from you.

    Run without a command to open the terminal app. Your data stays in one local folder
    (see `ownrec doctor`); nothing is sent anywhere.
    """
    if ctx.invoked_subcommand is None:
        from agent.tui.app import run

        run()


@cli.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--format", "format_", type=click.Choice(["csv", "jsonl", "letterboxd", "goodreads", "rss"]),
              help="The file's format; detected from its name and header when omitted.")
@click.option("--demo", is_flag=True, help="Import the demo catalog: the 1,682 MovieLens-100K films.")
@_fail_cleanly
def import_(path: Path | None, format_: str | None, demo: bool) -> None:
    """Add a catalog or your history from PATH, or the demo catalog with --demo.

    \b
    Formats:
      csv, jsonl   catalogs or history: columns id, title, text|description, year,
                   genres|tags, url, author, and for history feedback, rating, at
      letterboxd   Letterboxd export CSVs (ratings.csv, diary.csv, watched.csv, likes)
      goodreads    the Goodreads library export CSV
      rss          RSS 2.0 or Atom files, as a news catalog

    A malformed row is reported with its file and line and skipped; the good rows of a
    file are imported together. Importing the same file again changes nothing.
    """
    if demo == (path is not None):
        raise click.UsageError("give either PATH or --demo")
    agent = _agent()
    if demo:
        report = agent.import_demo(progress=_progress("encoding"))
    else:
        report = agent.import_file(path, format_, progress=_progress("encoding"))
    for problem in report.problems:
        click.echo(f"skipped {problem}", err=True)
    click.echo(report.summary())


@cli.command()
@click.option("--top", "-n", type=click.IntRange(1, 500), help="How many items (default: feed.size).")
@click.option("--query", "-q", help="What you are in the mood for, in your own words.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {id, ref, title, score, reason}.")
@_fail_cleanly
def recommend(top: int | None, query: str | None, as_json: bool) -> None:
    """Show your personal ranking of the catalog (already rated items are left out)."""
    recommendations = _agent().recommend(top, query)
    if as_json:
        _emit_json([
            {"id": r.item.id, "ref": r.item.ref, "title": r.item.display_title, "score": round(r.score, 4),
             "reason": r.reason, "exploring": r.exploring, "year": r.item.year,
             "genres": r.item.metadata.get("genres", [])}
            for r in recommendations
        ])
        return
    if not recommendations:
        click.echo("Nothing to recommend yet: import a catalog first (`ownrec import --demo`).")
    for rank, r in enumerate(recommendations, 1):
        year = f" ({r.item.year})" if r.item.year else ""
        click.echo(f"{rank:>3}. [{r.item.id}] {r.item.display_title}{year}  {r.score:+.2f}  {r.reason}")


@cli.command()
@click.argument("item")
@click.argument("action", type=click.Choice(["like", "dislike", "skip", "open", "rate"]))
@click.argument("stars", type=float, required=False)
@_fail_cleanly
def feedback(item: str, action: str, stars: float | None) -> None:
    """Tell ownrec what you thought of ITEM (an id, or source:external_id).

    \b
    Examples:
      ownrec feedback 42 like
      ownrec feedback movielens-100k:50 rate 4.5
    """
    if action == "rate" and stars is None:
        raise click.UsageError("rate needs a number of stars, 0.5 to 5: `ownrec feedback ITEM rate 4`")
    kind = "rating" if action == "rate" else action
    agent = _agent()
    result = agent.feedback(item, kind, stars, origin="cli")
    item_obj = agent.store.item(result.interaction.item_id)
    note = " and retrained fully" if result.retrained else ""
    click.echo(f"recorded {action}{f' {stars:g}' if stars is not None else ''} for {item_obj.display_title};"
               f" updated your model in {result.update_ms:.1f} ms{note}")


@cli.command()
@_fail_cleanly
def retrain() -> None:
    """Retrain your personal model from all your feedback now."""
    stats = _agent().retrain()
    click.echo(f"retrained on {stats['labels']} rated items in {stats['seconds']:.2f} s "
               f"(adapter version {stats['version']})")


@cli.command()
@click.argument("description")
@_fail_cleanly
def taste(description: str) -> None:
    """Describe your taste in a sentence, to steer the feed before (or beside) feedback."""
    agent = _agent()
    agent.describe_taste(description)
    agent.store.set_state("onboarded", True)
    click.echo(f"noted: “{description}”")


@cli.group()
def items() -> None:
    """Look through the catalog."""


@items.command("search")
@click.argument("text")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of items.")
@_fail_cleanly
def items_search(text: str, limit: int, as_json: bool) -> None:
    """Find items whose title or text matches TEXT."""
    found = _agent().search(text, limit)
    if as_json:
        _emit_json([{"id": i.id, "ref": i.ref, "title": i.display_title, "text": i.text, "metadata": i.metadata}
                    for i in found])
        return
    if not found:
        click.echo(f"no items match {text!r}")
    for item in found:
        year = f" ({item.year})" if item.year else ""
        click.echo(f"[{item.id}] {item.display_title}{year}  {item.ref}")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True,
              help="Print a JSON array of {id, name, value, confidence, pinned, hidden, ...}.")
@click.pass_context
@_fail_cleanly
def traits(ctx: click.Context, as_json: bool) -> None:
    """What ownrec believes about your personality and taste, and how to change it.

    \b
    Each trait is an axis between two poles (e.g. lighthearted 0 ... dark 1). Its value is
    read from your model, with a confidence that grows with consistent feedback.
    Edits are real: they move your model, change the next ranking, and can be undone.
      ownrec traits                 the list (hidden traits show no numbers)
      ownrec traits set dark 0.3    make the feed lighter
      ownrec traits pin dark        training may no longer move it
      ownrec traits hide niche      not used for ranking, not shown, not exported
      ownrec traits undo            take back the last edit
    Add your own traits to traits.toml in your data folder (same shape as the built-in ones).
    """
    if ctx.invoked_subcommand is not None:
        return
    agent = _agent()
    for problem in agent.traits.problems:
        click.echo(f"skipped {problem}", err=True)
    readings = agent.traits.readings()
    if as_json:
        _emit_json([r.as_dict() for r in readings])
        return
    for r in readings:
        if r.hidden:
            click.echo(f"{r.name:<18} (hidden)   `ownrec traits show {r.id}` to use and show it again")
            continue
        bar = "█" * round(r.value * 20) + "·" * (20 - round(r.value * 20))
        marks = " ".join(m for m, on in (("pinned", r.pinned), ("edited", r.edited)) if on)
        click.echo(f"{r.name:<18} {r.low[:18]:>18} {bar} {r.high[:18]:<18} {r.value:.2f}  "
                   f"confidence {r.confidence:.2f}  {marks}".rstrip())


def _trait_edit(action: str, help_text: str):
    @traits.command(action, help=help_text)
    @click.argument("name")
    @_fail_cleanly
    def command(name: str) -> None:
        edit = getattr(_agent().traits, action)(name)
        click.echo(f"{edit.trait_id}: {edit.describe()}")

    return command


for _action, _help in [
    ("pin", "Pin trait NAME: training may no longer move it."),
    ("unpin", "Let training move trait NAME again."),
    ("hide", "Hide trait NAME: removed from ranking, from every display and from exports."),
    ("show", "Show and use a hidden trait NAME again."),
    ("reset", "Take back your own settings of NAME: it reads what your feedback infers."),
    ("forget", "Reset NAME, remove what feedback taught about it, and drop its evidence and history."),
]:
    _trait_edit(_action, _help)


@traits.command("set")
@click.argument("name")
@click.argument("value", type=float)
@_fail_cleanly
def traits_set(name: str, value: float) -> None:
    """Set trait NAME to VALUE (0 to 1); your model moves so it reads that value."""
    edit = _agent().traits.set(name, value)
    click.echo(f"{edit.trait_id}: {edit.describe()}")


@traits.command("undo")
@_fail_cleanly
def traits_undo() -> None:
    """Undo the last trait edit."""
    edit = _agent().traits.undo()
    click.echo("nothing to undo" if edit is None else f"undid {edit.trait_id}: {edit.describe().replace(' (undone)', '')}")


@traits.command("history")
@click.argument("name", required=False)
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def traits_history(name: str | None, as_json: bool) -> None:
    """The local log of trait edits, newest first (never exported for hidden traits)."""
    edits = _agent().traits.history(name)
    if as_json:
        _emit_json([{"id": e.id, "at": e.at, "trait": e.trait_id, "action": e.action, "undone": e.undone,
                     "description": e.describe()} for e in edits])
        return
    if not edits:
        click.echo("no trait edits yet")
    for edit in edits:
        when = datetime.fromtimestamp(edit.at).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{when}  {edit.trait_id:<18} {edit.describe()}")


@traits.command("portrait")
@_fail_cleanly
def traits_portrait() -> None:
    """A few sentences about your taste, written by the local LLM from the numbers above
    (never the other way round: nothing it writes changes a value)."""
    portrait = _agent().write_portrait()
    if not portrait.text:
        click.echo("not enough clear traits yet for a portrait: rate a few more items")
        return
    click.echo(portrait.text)
    click.echo(f"(from: {'; '.join(portrait.facts)})", err=True)


@traits.command("validate")
@click.option("--quick", is_flag=True, help="A sample of users and fewer training epochs (for CI).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("EVALUATION.md"),
              show_default=True, help="The Markdown report to write (its traits section is replaced).")
@_fail_cleanly
def traits_validate(quick: bool, as_json: bool, output: Path) -> None:
    """Check that the traits measure what they claim, on MovieLens-100K; write EVALUATION.md."""
    from agent.lab.validation.traits import run_validation, write_report

    results = run_validation(quick=quick, log=lambda m: click.echo(m, err=True))
    markdown = write_report(results, output)
    _emit_json(results) if as_json else click.echo(markdown)


@cli.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@_fail_cleanly
def export(output: Path | None) -> None:
    """Write all your personal data (feedback, items, settings, model parameters) as JSON."""
    data = json.dumps(_agent().export(), indent=2, ensure_ascii=False)
    if output is None:
        click.echo(data)
    else:
        from agent.core.atomic import write_text_atomic

        write_text_atomic(output, data)
        click.echo(f"wrote {output}", err=True)


@cli.command()
@click.option("--all", "everything", is_flag=True, required=True, help="Required: forget everything.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_fail_cleanly
def forget(everything: bool, yes: bool) -> None:
    """Delete all your personal data: feedback, model, settings. Models stay cached."""
    home = paths.data_dir()
    if not yes:
        click.confirm(f"Delete everything ownrec knows about you in {home}?", abort=True)
    removed = _agent().forget_all()
    click.echo(f"deleted {len(removed)} files and folders from {home}")


@cli.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check the models, the database and the versions, and say what to fix."""
    from agent.core.doctor import run_checks

    checks = run_checks()
    if as_json:
        _emit_json([c.__dict__ for c in checks])
    else:
        for check in checks:
            mark = "ok " if check.ok else "FIX"
            click.echo(f"[{mark}] {check.name}: {check.detail}")
            if not check.ok and check.fix:
                click.echo(f"      fix: {check.fix}")
    if not all(c.ok for c in checks):
        sys.exit(1)


@cli.group()
def models() -> None:
    """Prepare the local models (derived from installed PyPI packages)."""


@models.command("prepare")
@click.option("--force", is_flag=True, help="Rebuild even if the prepared files check out.")
@_fail_cleanly
def models_prepare(force: bool) -> None:
    """Export the text encoder to ONNX and quantize it to int8 (needs the `models` extra), and
    write the default chat model's Q8_0 runtime copy (faster prompt evaluation on a CPU)."""
    from agent.core.llm.model import LLMUnavailable, default_model_path, default_runtime_file, verify_default
    from agent.core.model_prep import prepare_encoder

    log = lambda m: click.echo(m, err=True)  # noqa: E731
    path = prepare_encoder(paths.models_dir(), force=force, log=log)
    click.echo(f"encoder ready in {path}")
    cache = paths.models_dir() / "llm"
    try:
        source = default_model_path()
        verify_default(source, cache)
        runtime = default_runtime_file(source, cache, log=log, force=force)
    except LLMUnavailable as error:  # the encoder is ready; the chat model is optional
        click.echo(f"chat model not prepared: {error.problem}\n  fix: {error.fix}", err=True)
        return
    click.echo(f"chat model ready: {runtime}")


@cli.group()
def config() -> None:
    """Read and change settings (stored in config.toml in the data directory)."""


@config.command("list")
@_fail_cleanly
def config_list() -> None:
    """Every setting, its value, and what it does."""
    for setting, value, is_set in Config().items():
        origin = "" if is_set else " (default)"
        click.echo(f"{setting.key} = {value!r}{origin}\n    {setting.help}")


@config.command("get")
@click.argument("key")
@_fail_cleanly
def config_get(key: str) -> None:
    """Print the value of KEY."""
    click.echo(Config().get(key))


@config.command("set")
@click.argument("key", type=click.Choice(sorted(SETTINGS), case_sensitive=True), metavar="KEY")
@click.argument("value")
@_fail_cleanly
def config_set(key: str, value: str) -> None:
    """Set KEY to VALUE (checked against the setting's type and range)."""
    stored = Config().set(key, value)
    click.echo(f"{key} = {stored!r}")


@config.command("unset")
@click.argument("key")
@_fail_cleanly
def config_unset(key: str) -> None:
    """Return KEY to its default."""
    Config().unset(key)
    click.echo(f"{key} reset to its default")


@cli.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--quick", is_flag=True, help="Fewer repetitions and one sync round of 100 (for CI); noisier figures.")
@click.option("--sync-clients", default=None, callback=lambda ctx, param, value: value and _cohort_sizes(
              ctx, param, value), help="Comma-separated cohort sizes of the sync rounds [default: 100,1000; "
              "--quick: 100].")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("BENCHMARKS.md"),
              show_default=True, help="Where to write the Markdown report (the whole file is rewritten).")
@click.pass_context
@_fail_cleanly
def bench(ctx: click.Context, as_json: bool, quick: bool, sync_clients: tuple[int, ...] | None, output: Path) -> None:
    """Run every benchmark in one go and rewrite BENCHMARKS.md: each figure beside its target and the peer
    measured in the same run (`ownrec bench sync`: federated sync alone)."""
    if ctx.invoked_subcommand is not None:
        return
    from agent.lab.bench.runner import run_suite, suite_markdown, write_suite_report

    results = run_suite(quick=quick, log=lambda m: click.echo(m, err=True), sync_clients=sync_clients)
    write_suite_report(output, results)
    if as_json:
        _emit_json(results)
    else:
        click.echo(suite_markdown(results))


def _cohort_sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part) for part in value.replace(" ", "").split(",") if part)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated client counts such as 100,1000, not {value!r}") from None
    if not sizes or min(sizes) < 3:
        raise click.BadParameter("each round needs at least 3 clients")
    return sizes


@bench.command("sync")
@click.option("--clients", default="100,1000", show_default=True, callback=_cohort_sizes,
              help="Comma-separated cohort sizes: one round for each.")
@click.option("--workers", type=click.IntRange(1, 256), default=None,
              help="Client worker processes per round (default: one per 250 clients, at least 2).")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("BENCHMARKS.md"),
              show_default=True, help="The Markdown report whose sync section is replaced (the rest is kept).")
@_fail_cleanly
def bench_sync(clients: tuple[int, ...], workers: int | None, as_json: bool, output: Path) -> None:
    """One federated round on loopback: wall time, coordinator CPU and memory, bytes per client.

    Runs `ownrec coordinator serve` and the simulated clients (the product client, one thread and
    HTTPS connection each, spread over worker processes) on this machine, then one client's
    secure-aggregation work at cohorts of 100 to 100,000. In a report `ownrec bench` wrote, the sync
    figures are replaced and the whole report rendered again; in any other file only the section
    between the sync markers is. The 1,000-client round takes minutes on two cores.
    """
    from agent.lab.bench.runner import write_sync_report
    from agent.lab.bench.coordinator import SyncBenchFailed, run_sync_bench, sync_markdown

    try:
        results = run_sync_bench(clients, log=lambda m: click.echo(m, err=True), workers=workers)
    except SyncBenchFailed as error:
        raise click.ClickException(str(error)) from None
    section = sync_markdown(results)
    write_sync_report(output, results)
    if as_json:
        _emit_json(results)
    else:
        click.echo(section)


@cli.group("eval", invoke_without_command=True)
@click.option("--quick", is_flag=True, help="150 users, 2 rounds, epsilon 4 only (as here and 8x larger), a short "
                                           "MF: a few minutes (CI).")
@click.option("--users", type=click.IntRange(30, 943), default=None,
              help="Evaluate a fixed random subset of this many users [default: all 943; --quick: 150].")
@click.option("--rounds", type=click.IntRange(1, 100), default=None, help="Federated rounds [default: 3; --quick: 2].")
@click.option("--seed", type=int, default=0, show_default=True, help="The split's negatives and the subset.")
@click.option("--item-rate", type=click.FloatRange(min=0, min_open=True), default=None,
              help="The coordinator's item rate (item biases and residuals move this many times the cohort "
                   "average) for every federated row [default: 32 without noise, 1 with noise].")
@click.option("--larger-federation", type=click.IntRange(min=0), default=8, show_default=True,
              help="Also run epsilon 4 as one of a federation this many times larger: the users' average takes "
                   "the noise that so many people's average would carry (0 or 1: no such row).")
@click.option("--longer-rounds", type=click.IntRange(min=0), default=None,
              help="Also run the no-DP row for this many rounds (0: no such row) [default: 6; --quick: 0].")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("EVALUATION.md"),
              show_default=True, help="The report whose eval section is replaced (the rest is kept); plots go "
                                      "to docs/evaluation/ beside it.")
@click.pass_context
@_fail_cleanly
def eval_group(ctx: click.Context, quick: bool, users: int | None, rounds: int | None, seed: int,
               item_rate: float | None, larger_federation: int, longer_rounds: int | None, as_json: bool,
               output: Path) -> None:
    """Accuracy on MovieLens-100K (PFedRec protocol: HR@10 and NDCG@10, 1 + 99 sampled and full ranking):
    popularity, centralized MF, ownrec local-only, ownrec federated through the real client and
    coordinator code (3 rounds without noise at the item rate 32 and at 1, and 6 rounds at 32),
    federated with DP at epsilon 1, 4 and 8 (item rate 1), and epsilon 4 in a federation 8 times
    larger (item rate 32). ownrec's rows score as the feed does, steered by the person's latest likes,
    and also show what they give without them. Writes EVALUATION.md's eval section and a privacy-utility
    plot. The full run takes about 26 minutes on 2 cores.

    `ownrec eval rerank`: whether the LLM's judgement improves the ranker's top 20."""
    if ctx.invoked_subcommand is not None:
        return
    from dataclasses import replace

    from agent.lab.people import single_blas_thread
    from agent.lab.evaluation.federated import QUICK, EvalSettings, run_evaluation
    from agent.lab.evaluation.report import write_eval_report

    settings = replace(QUICK if quick else EvalSettings(), seed=seed)
    if users is not None:
        settings = replace(settings, users=None if users == 943 else users)
    if rounds is not None:
        settings = replace(settings, rounds=rounds)
    if item_rate is not None:
        settings = replace(settings, item_rate=item_rate)
    settings = replace(settings, larger_federation=larger_federation)
    if longer_rounds is not None:
        settings = replace(settings, longer_rounds=longer_rounds)
    with single_blas_thread():
        results = run_evaluation(settings, log=lambda m: click.echo(m, err=True))
    write_eval_report(results, output)
    if as_json:
        _emit_json(results)
    else:
        for row in results["rows"]:
            click.echo(f"{row['name']:<40} HR@10 {row['hr10_sampled']:.3f}  NDCG@10 {row['ndcg10_sampled']:.3f}  "
                       f"full HR@10 {row['hr10_full']:.3f}  full NDCG@10 {row['ndcg10_full']:.3f}")
        click.echo(f"written to {output}")


@eval_group.command("rerank")
@click.option("--users", type=click.IntRange(1, 943), default=100, show_default=True,
              help="MovieLens users to evaluate (a fixed random subset for --seed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1, 64), default=1, show_default=True,
              help="llama.cpp (and torch) threads; on a busy 2-core machine 1 is fastest.")
@click.option("--lora-steps", type=click.IntRange(0, 10_000), default=0, show_default=True,
              help="Also train a personal LoRA per user for this many steps and add a row with it (minutes per user).")
@click.option("--lora-users", type=click.IntRange(1, 943),
              help="The personal-LoRA row for only the first N of the evaluated users, compared with the base model "
                   "on the same N (default: all of them).")
@click.option("--checkpoint", type=click.Path(dir_okay=False, path_type=Path),
              help="A file each finished user is appended to: an interrupted run resumes from it.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("EVALUATION.md"),
              show_default=True, help="The report whose rerank section is replaced (the rest is kept).")
@_fail_cleanly
def eval_rerank(users: int, seed: int, threads: int, lora_steps: int, lora_users: int | None, checkpoint: Path | None,
                as_json: bool, output: Path) -> None:
    """Does the LLM's yes/no judgement improve the ranker's top 20? NDCG@10 and HR@10, sampled
    (1 + 99 negatives) and full ranking, ranker alone against reranked, with the weight chosen on
    validation items only. The answer sets whether `llm.rerank` should be on."""
    import tempfile

    from agent.lab.evaluation import rerank as rerank_eval

    with tempfile.TemporaryDirectory(prefix="ownrec-eval-lora-") as folder:
        hook = None
        if lora_steps:
            from agent.lab.evaluation.lora import per_user_lora

            hook = per_user_lora(lora_steps, Path(folder), threads=threads, seed=seed)
        results = rerank_eval.run_rerank_evaluation(users=users, seed=seed, log=lambda m: click.echo(m, err=True),
                                                    threads=threads, lora_for_user=hook, checkpoint=checkpoint,
                                                    lora_users=lora_users)
    rerank_eval.write_report(results, output)
    if as_json:
        _emit_json({k: v for k, v in results.items() if k != "cases"})
    else:
        click.echo(f"written to {output}; reranking {'helps' if rerank_eval.helps(results) else 'is not shown to help'}")


@cli.command("audit")
@click.option("--quick", is_flag=True, help="300 users, epsilon 4 only: a few minutes (CI).")
@click.option("--users", type=click.IntRange(60, 943), default=None,
              help="Audit a fixed random subset of this many users [default: all 943; --quick: 300].")
@click.option("--cohort-size", type=click.IntRange(3, 200), default=20, show_default=True,
              help="The cohorts whose sums the server view shows (20: the coordinator's smallest).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("EVALUATION.md"),
              show_default=True, help="The report whose audit section is replaced (the rest is kept).")
@_fail_cleanly
def audit(quick: bool, users: int | None, cohort_size: int, seed: int, as_json: bool, output: Path) -> None:
    """Can what leaves a device reveal who the person is? An attribute-inference attack (a linear
    classifier trained on half of the MovieLens users and tested on the other half, then the halves
    swap; the mean AUC) against gender, age and every inferred trait, on three views: the raw local
    delta, the clipped and noised upload, and the cohort sums the coordinator actually sees, without
    noise and at epsilon 1, 4 and 8, over 5 random splits. Writes EVALUATION.md's audit section and an attack-AUC plot. The full run takes about 15
    minutes on 2 cores."""
    from dataclasses import replace

    from agent.lab.people import single_blas_thread
    from agent.lab.evaluation.audit import QUICK_AUDIT, AuditSettings, run_audit
    from agent.lab.evaluation.report import write_audit_report

    settings = replace(QUICK_AUDIT if quick else AuditSettings(), seed=seed, cohort_size=cohort_size)
    if users is not None:
        settings = replace(settings, users=None if users == 943 else users)
    with single_blas_thread():
        results = run_audit(settings, log=lambda m: click.echo(m, err=True))
    write_audit_report(results, output)
    if as_json:
        _emit_json(results)
    else:
        for view in results["views"]:
            eps = "" if view["view"] == "raw delta" else f" at epsilon {view['epsilon'] or 'inf (no noise)'}"
            click.echo(f"{view['view']}{eps}: " + ", ".join(f"{t} {r['auc']:.3f}" for t, r in view["results"].items()
                                                              if not t.startswith("trait:")))
        click.echo(f"written to {output}")


# -- ask and chats (agent.core.llm) -----------------------------------------------------------------


def _llm_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """LLMUnavailable and chat errors as one clear line (ranking works without the LLM)."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from agent.core.llm import ChatError, LLMUnavailable

        try:
            return fn(*args, **kwargs)
        except LLMUnavailable as error:
            raise click.ClickException(f"{error}\n(`ownrec recommend --query TEXT` works without it)") from None
        except ChatError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


def _item_lines(items: list[dict[str, Any]]) -> list[str]:
    lines = []
    for rank, item in enumerate(items, 1):
        year = f" ({item['year']})" if item.get("year") else ""
        lines.append(f"{rank:>3}. [{item['id']}] {item['title']}{year}  {item['score']:+.2f}  {item['reason']}")
    return lines


@cli.command()
@click.argument("text", nargs=-1, required=True)
@click.option("--chat", "conversation", type=int, metavar="ID", help="Continue conversation ID (`ownrec chats list`).")
@click.option("--top", "-n", type=click.IntRange(1, 20), help="How many items to show (default: llm.shortlist).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON object: {conversation_id, reply, items: [{id, title, score, reason, ...}], ...}.")
@_fail_cleanly
@_llm_errors
def ask(text: tuple[str, ...], conversation: int | None, top: int | None, as_json: bool) -> None:
    """Ask for something in your own words; the answer comes from your own ranking.

    \b
    Examples:
      ownrec ask something funny from the 80s
      ownrec ask "a slow, thoughtful science fiction film" --json
      ownrec ask --chat 3 "something older"

    The items come from your personal ranker, filtered by what the request asks for (genres,
    years). A small language model (SmolLM2-135M-Instruct by default; `ownrec config set
    llm.model PATH` for another GGUF) writes the reply, which is shown sentence by sentence as
    each sentence is checked: a sentence naming a title that is not on the list is held back.
    Conversations stay on this machine: `ownrec chats`.
    """
    reply = _agent().stream(" ".join(text), conversation_id=conversation, size=top)
    if as_json:
        for _ in reply:
            pass
        assert reply.answer is not None
        _emit_json(reply.answer.as_dict())
        return
    for chunk in reply:
        click.echo(chunk, nl=False)
    answer = reply.answer
    assert answer is not None
    click.echo()
    if answer.filters:
        relaxed = f" (relaxed: {', '.join(answer.relaxed)}, too few matched)" if answer.relaxed else ""
        click.echo(f"\nfiltered for {answer.filters.describe()}{relaxed}")
    click.echo("")
    for line in _item_lines(answer.items_json()):
        click.echo(line)
    held = len([r for r in answer.removed if r.reason != "repeated"])
    if held:
        click.echo(f"\n({held} sentence{'s' if held > 1 else ''} held back: named a title not on this list)", err=True)
    click.echo(f"\nconversation {answer.conversation_id}: continue with `ownrec ask --chat {answer.conversation_id} ...`",
               err=True)


@cli.group()
def chats() -> None:
    """Your conversations with `ownrec ask`, kept on this machine."""


@chats.command("list")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def chats_list(as_json: bool) -> None:
    """Every conversation, most recent first."""
    found = _agent().conversations()
    if as_json:
        _emit_json([c.as_dict(with_messages=False) for c in found])
        return
    if not found:
        click.echo("no conversations yet: `ownrec ask ...` starts one")
    for c in found:
        when = datetime.fromtimestamp(c.updated).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{c.id:>4}  {when}  {c.message_count:>3} messages  {c.title}")


@chats.command("show")
@click.argument("conversation", type=int, metavar="ID")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def chats_show(conversation: int, as_json: bool) -> None:
    """The messages of conversation ID, with the items shown beside each reply."""
    found = _agent().conversation(conversation)
    if as_json:
        _emit_json(found.as_dict())
        return
    click.echo(f"conversation {found.id}: {found.title}")
    for message in found.messages:
        when = datetime.fromtimestamp(message.created).strftime("%Y-%m-%d %H:%M")
        click.echo(f"\n[{when}] {'you' if message.role == 'user' else 'ownrec'}: {message.text}")
        for line in _item_lines(message.items):
            click.echo(line)


@chats.command("delete")
@click.argument("conversation", type=int, metavar="ID", required=False)
@click.option("--all", "everything", is_flag=True, help="Delete every conversation.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation (with --all).")
@_fail_cleanly
def chats_delete(conversation: int | None, everything: bool, yes: bool) -> None:
    """Delete conversation ID, or all of them with --all."""
    if everything == (conversation is not None):
        raise click.UsageError("give either a conversation ID or --all")
    agent = _agent()
    if everything:
        if not yes:
            click.confirm("Delete every conversation?", abort=True)
        click.echo(f"deleted {agent.delete_conversations()} conversations")
    else:
        agent.delete_conversation(conversation)
        click.echo(f"deleted conversation {conversation}")


# -- the personal LoRA of the chat LLM (agent.core.lora) ------------------------------------------


def _lora_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The LoRA's own errors as one clear line; nothing was changed when one is raised."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from agent.core.llm.adapter import AdapterRefused
        from agent.core.lora.base import TrainingUnavailable
        from agent.core.lora.examples import NotEnoughFeedback
        from agent.core.lora.job import TrainingError
        from agent.core.lora.versions import LoraError

        try:
            return fn(*args, **kwargs)
        except (LoraError, NotEnoughFeedback, AdapterRefused, TrainingUnavailable, TrainingError) as error:
            raise click.ClickException(str(error)) from None

    return wrapper


@cli.group()
def lora() -> None:
    """Your personal LoRA: the language model learns, on this machine, which items you enjoy.

    \b
    Examples:
      ownrec lora train               # learn from your likes, dislikes and ratings (minutes)
      ownrec lora status
      ownrec lora off                 # the language model answers as it came; `on` again
      ownrec lora export ~/my-lora    # the GGUF, with an Ollama Modelfile

    Training reads your feedback ("would you enjoy this item?": liked or rated 4+ is yes,
    disliked or rated 2 or less is no, a few items you never rated count as a soft no) and fits a
    rank-8 LoRA on the attention of the local model. It never leaves this folder.
    """


@lora.command("train")
@click.option("--steps", type=click.IntRange(1, 10_000), default=60, show_default=True,
              help="Optimizer steps in all (a resumed run continues to this count).")
@click.option("--resume/--fresh", default=True, show_default=True,
              help="Continue an interrupted run from its checkpoint, or start again.")
@click.option("--batch", type=click.IntRange(1, 64), default=4, show_default=True, help="Examples per step.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@_fail_cleanly
@_lora_errors
def lora_train(steps: int, resume: bool, batch: int, as_json: bool) -> None:
    """Train the personal LoRA and switch it on (Ctrl-C stops; the next run resumes)."""
    import signal
    import threading
    import time

    started = time.perf_counter()
    cancel = threading.Event()

    def stop(signum, frame) -> None:  # the first Ctrl-C finishes the step and saves; a second one aborts
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        click.echo("\nstopping after this step (Ctrl-C again to abort at once)...", err=True)

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, stop) if in_main_thread else None

    def report(step: int, total: int, loss: float) -> None:
        if sys.stderr.isatty() or step == total:
            click.echo(f"\rstep {step}/{total}  loss {loss:.3f}", nl=step == total, err=True)

    try:
        outcome = _agent().train_lora(LoraTrainingSettings(steps=steps, batch=batch), fresh=not resume,
                                      progress=report, cancel=cancel, log=lambda m: click.echo(m, err=True))
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: the last checkpoint is kept; `ownrec lora train` resumes it") from None
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    if as_json:
        _emit_json(outcome.as_dict())
        return
    result = outcome.result
    seconds = time.perf_counter() - started
    if result.cancelled:
        click.echo(f"stopped at step {result.step}/{result.steps}; `ownrec lora train` resumes")
        return
    before = "" if result.loss_before is None else f"loss {result.loss_before:.3f} -> {result.loss_after:.3f}, "
    click.echo(f"personal LoRA v{outcome.version}: {result.counts.get('examples')} examples "
               f"({result.counts.get('positives')} yes, {result.counts.get('negatives')} no, "
               f"{result.counts.get('weak_negatives')} unrated as soft no), {before}{seconds:.0f} s; switched on")


@lora.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print {enabled, active_version, versions, checkpoint}.")
@_fail_cleanly
@_lora_errors
def lora_status(as_json: bool) -> None:
    """Whether the personal LoRA is on, its versions, and an unfinished run."""
    found = _agent().lora_status()
    if as_json:
        _emit_json(found)
        return
    if not found["versions"]:
        click.echo("no personal LoRA yet: `ownrec lora train`")
    else:
        state = "on" if found["enabled"] else "off"
        click.echo(f"personal LoRA: {state}" + (f", using v{found['active_version']}" if found["active_version"] else ""))
        for row in found["versions"]:
            when = datetime.fromtimestamp(row["created_at"]).strftime("%Y-%m-%d %H:%M")
            loss = (f"loss {row['loss_before']:.3f} -> {row['loss_after']:.3f}"
                    if row.get("loss_before") is not None and row.get("loss_after") is not None else "")
            damaged = "" if row["intact"] else "  DAMAGED (skipped)"
            click.echo(f"  v{row['version']}  {when}  {row.get('steps')} steps, {row.get('examples')} examples  "
                       f"{loss}{damaged}")
    if found["checkpoint"] is not None:
        note = found["checkpoint"]
        click.echo(f"unfinished run: step {note.get('step', '?')}/{note.get('steps', '?')} "
                   "(`ownrec lora train` resumes it, `--fresh` starts again)")


@lora.command("on")
@_fail_cleanly
@_lora_errors
def lora_on() -> None:
    """Use the newest personal LoRA in the language model."""
    version = _agent().switch_lora(True)
    click.echo(f"personal LoRA on (v{version})" if version is not None else "personal LoRA on")


@lora.command("off")
@_fail_cleanly
@_lora_errors
def lora_off() -> None:
    """The language model answers without the personal LoRA (the versions are kept)."""
    _agent().switch_lora(False)
    click.echo("personal LoRA off: `ownrec lora on` turns it back on")


@lora.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_fail_cleanly
@_lora_errors
def lora_reset(yes: bool) -> None:
    """Delete every version of the personal LoRA and any unfinished run."""
    if not yes:
        click.confirm("Delete every version of your personal LoRA?", abort=True)
    count = _agent().reset_lora()
    click.echo(f"deleted {count} version{'s' if count != 1 else ''} of the personal LoRA")


@lora.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@_fail_cleanly
@_lora_errors
def lora_export(folder: Path) -> None:
    """Copy the newest personal LoRA into FOLDER as a GGUF, with an Ollama Modelfile."""
    from agent.core.llm.model import choose_model

    agent = _agent()
    try:
        base_path = choose_model(agent.config.get("llm.model") or "").path
    except LLMUnavailable:
        base_path = None
    written = agent.export_lora(folder, base_path)
    for path in written.values():
        click.echo(str(path))


# -- opt-in federated sync, on this device (agent.core.sync.consent) ----------------------------------


def _sync_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Sync set-up errors (a bad pin file) as one clear line; nothing was changed when one is raised."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from agent.federation.errors import SyncError

        try:
            return fn(*args, **kwargs)
        except SyncError as error:
            raise click.ClickException(str(error)) from None

    return wrapper


@cli.group()
def sync() -> None:
    """Opt-in federated sync: help improve the shared adapter, or stay entirely offline (the default).

    \b
    Examples:
      ownrec sync join coordinator-pin.json   # pin the federation's coordinator (from its host)
      ownrec sync on                          # take part: rounds run while the app is open and idle
      ownrec sync log                         # every upload and the privacy it spent
      ownrec sync off                         # stop at once (a round in flight is cancelled)

    With sync on, only clipped, noised and masked changes to the shared adapter leave this device,
    encrypted, to the pinned coordinator; never your ratings, items, traits or personal adapter.
    With sync off, ownrec opens no network connection at all. See docs/threat-model.md.
    """


@sync.command("on")
@_fail_cleanly
@_sync_errors
def sync_on() -> None:
    """Take part in the federation (rounds run in the app, when it is idle)."""
    from agent.core.sync import consent

    agent = _agent()
    agent.set_sync(True, "cli")
    click.echo("sync on: " + consent.WHAT_LEAVES)
    if agent.sync_pin() is None:
        click.echo(f"no coordinator is pinned yet, so nothing is sent: {consent.HOW_TO_JOIN}.")


@sync.command("off")
@_fail_cleanly
def sync_off() -> None:
    """Stop taking part; a round in flight in the app is cancelled within seconds."""
    _agent().set_sync(False, "cli")
    click.echo("sync off: ownrec opens no network connection (`ownrec sync on` to take part again)")


@sync.command("join")
@click.argument("pin_file", type=click.Path(dir_okay=False, path_type=Path), metavar="PIN_FILE")
@_fail_cleanly
@_sync_errors
def sync_join(pin_file: Path) -> None:
    """Pin a coordinator: PIN_FILE is the coordinator-pin.json that `ownrec coordinator serve` writes."""
    from agent.core.sync import consent

    agent = _agent()
    pin = agent.join_sync(pin_file)
    enabled = agent.sync_enabled()
    click.echo(f"pinned the coordinator at {pin.url}\n  release-signing key {consent.fingerprint(pin.signing_public_key)}")
    click.echo("sync is on: rounds run while the app is open and idle" if enabled
               else "sync is still off: `ownrec sync on` to take part")


@sync.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print an object with enabled, coordinator and total.")
@_fail_cleanly
def sync_status(as_json: bool) -> None:
    """Whether sync is on, the pinned coordinator, and the privacy spent so far."""
    from agent.core.sync import consent

    found = _agent().sync_status()
    if as_json:
        _emit_json(found.as_dict())
        return
    click.echo(f"sync: {'on' if found.enabled else 'off'}" + ("" if found.asked else " (never asked)"))
    if found.pin_problem:
        click.echo(f"coordinator: {found.pin_problem}")
    elif found.coordinator_url is None:
        click.echo(f"coordinator: none pinned ({consent.HOW_TO_JOIN})")
    else:
        click.echo(f"coordinator: {found.coordinator_host}, release-signing key {found.key_fingerprint}")
        click.echo(_privacy_line(found.total))


def _privacy_line(total: Any) -> str:
    if total is None or total.released_rounds == 0:
        uploads = "" if total is None or not total.uploads else f" ({total.uploads} uploads, none released)"
        return f"privacy spent: none yet{uploads}"
    server = "" if total.epsilon_server is None else f"; the coordinator reports ε = {total.epsilon_server:.2f}"
    return (f"privacy spent: ε = {total.epsilon_client:.2f} at δ = {total.delta:g} over {total.released_rounds} "
            f"released round{'s' if total.released_rounds != 1 else ''} (computed here{server})")


@sync.command("log")
@click.option("--limit", type=click.IntRange(1, 100_000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of ledger rows.")
@_fail_cleanly
def sync_log(limit: int, as_json: bool) -> None:
    """Every upload, newest first: round, bytes, pre-clip norm, C, noise, and ε as the coordinator
    reports it and as this device computes it."""
    from agent.core.sync import consent

    agent = _agent()
    rows = agent.sync_log(limit)
    if as_json:
        _emit_json(consent.ledger_as_json(rows))
        return
    if not rows:
        click.echo("no rounds yet: nothing has left this device")
        return
    click.echo(f"{'when':16}  {'round':8}  {'state':9}  {'bytes':>9}  {'norm':>6}  {'C':>5}  {'noise σ':>8}  "
               f"{'ε server':>8}  {'ε here':>7}")
    for row in rows:
        when = datetime.fromtimestamp(row.at).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{when:16}  {row.round:8}  {row.state:9}  {row.bytes_sent:>9,}  {row.pre_clip_norm:>6.3f}  "
                   f"{row.clip_norm:>5.2f}  {row.noise_std:>8.4f}  {_epsilon(row.epsilon_server):>8}  "
                   f"{_epsilon(row.epsilon_client):>7}")
    for key in dict.fromkeys(row.coordinator_key for row in rows):
        click.echo(f"coordinator {consent.fingerprint(bytes.fromhex(key))}: "
                   + _privacy_line(agent.sync_privacy(key)))


def _epsilon(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


# -- the federation's coordinating server (agent.server) -------------------------------------------


@cli.group()
def coordinator() -> None:
    """The coordinating server of opt-in federated sync (run by whoever hosts a federation).

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
@click.option("--log-level", default="info", show_default=True)
def coordinator_serve(host: str, port: int, db_url: str | None, state_dir: Path, workers: int,
                      items_file: Path | None, min_cohort: int, max_cohort: int, checkin_window: float,
                      stage_timeout: float, clip_norm: float, noise_multiplier: float, target_delta: float,
                      epsilon_budget: float, server_learning_rate: float, item_learning_rate: float,
                      log_level: str) -> None:
    """Serve the coordinator over HTTPS until stopped."""
    from agent.server.app import serve

    state_dir = state_dir.resolve()
    config = {
        "state_dir": str(state_dir), "db": db_url or f"sqlite:///{state_dir / 'coordinator.sqlite3'}",
        "items_file": str(items_file.resolve()) if items_file else None,
        "settings": {"min_cohort": min_cohort, "max_cohort": max_cohort, "checkin_window": checkin_window,
                     "stage_timeout": stage_timeout, "clip_norm": clip_norm, "noise_multiplier": noise_multiplier,
                     "target_delta": target_delta, "epsilon_budget": epsilon_budget,
                     "server_learning_rate": server_learning_rate, "item_learning_rate": item_learning_rate},
    }
    try:
        serve(config, host, port, workers=workers, log_level=log_level)
    except ValueError as error:
        raise click.ClickException(str(error)) from None


def main() -> None:
    cli(prog_name="ownrec")


if __name__ == "__main__":
    main()
