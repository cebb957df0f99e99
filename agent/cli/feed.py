"""Your feed: import a catalog or your history, see your ranking, give feedback, steer it, search the catalog."""

from __future__ import annotations

from pathlib import Path

import click

from agent.cli.common import (TEXT, SectionedGroup, echo_err, emit_json, fail_cleanly, open_agent,
                              open_agent_finishing_imports, report_progress)
from agent.core.importers import FORMATS, SCALES


@click.command("import")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), required=False)
@click.option("--format", "format_", type=click.Choice(list(FORMATS)),
              help="The file's format; detected from its name and first lines when omitted.")
@click.option("--scale", type=click.Choice([str(scale) for scale in SCALES]),
              help="What the best rating in the file is (5, 10 or 100); when omitted, the format's own "
                   "(IMDb, Trakt and Simkl 10) or the one its ratings show.")
@click.option("--demo", is_flag=True, help="Import the demo catalog: the 1,682 MovieLens-100K films.")
@fail_cleanly
def import_(path: Path | None, format_: str | None, scale: str | None, demo: bool) -> None:
    """Add a catalog or your history from PATH, or the demo catalog with --demo.

    \b
    Formats:
      csv, jsonl   catalogs or history: columns id, title, text|description, year,
                   genres|tags, url, author, kind, and for history feedback, rating, at
      letterboxd   Letterboxd export CSVs (ratings, diary, watched, reviews, likes,
                   watchlist) and its lists
      goodreads    the Goodreads library export CSV
      imdb         IMDb ratings, watchlist and list exports (UTF-8 or latin-1)
      trakt        Trakt export JSON files (ratings, watched, history, watchlist)
      simkl        the Simkl backup (JSON or CSV)
      rss          RSS or Atom files, as a news catalog
      opml         a feed reader's subscription list: its feeds that are files

    Each import says what it read the file as, what it took each row as (rated,
    liked, watched, wanted, catalog only) and the scale it read ratings on. A
    malformed row is reported with its file and line and skipped; the good rows of a
    file are imported together. Importing the same file again changes nothing.
    ownrec downloads nothing: feeds come from files.
    """
    if demo == (path is not None):
        raise click.UsageError("give either PATH or --demo")
    if demo and (format_ or scale):
        raise click.UsageError("--format and --scale are for PATH, not --demo")
    agent = open_agent()
    if demo:
        report = agent.import_demo(progress=report_progress("encoding"),
                                   prior_progress=report_progress("learning release 0 from the public ratings (epochs)"),
                                   say=echo_err)
    else:
        report = agent.import_file(path, format_, progress=report_progress("encoding"),
                                   scale=int(scale) if scale else None, say=echo_err)
    for line in report.understanding():
        click.echo(line)
    for problem in report.problems:
        click.echo(f"skipped {problem}", err=True)
    click.echo(report.summary())


@click.command()
@click.option("--top", "-n", type=click.IntRange(1, 500), help="How many items (default: feed.size).")
@click.option("--query", "-q", type=TEXT, help="What you are in the mood for, in your own words.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of {id, ref, title, score, reason}.")
@fail_cleanly
def recommend(top: int | None, query: str | None, as_json: bool) -> None:
    """Show your personal ranking of the catalog (already rated items are left out)."""
    recommendations = open_agent_finishing_imports().recommend(top, query)
    if as_json:
        emit_json([
            {"id": r.item.id, "ref": r.item.ref, "title": r.item.display_title, "score": round(r.score, 4),
             "reason": r.reason, "exploring": r.exploring, "seen": r.seen, "year": r.item.year,
             "genres": r.item.metadata.get("genres", [])}
            for r in recommendations
        ])
        return
    if not recommendations:
        click.echo("Nothing to recommend yet: import a catalog first (`ownrec import --demo`).")
    for rank, r in enumerate(recommendations, 1):
        year = f" ({r.item.year})" if r.item.year else ""
        seen = " (seen)" if r.seen else ""
        click.echo(f"{rank:>3}. [{r.item.id}] {r.item.display_title}{year}{seen}  {r.score:+.2f}  {r.reason}")


@click.command()
@click.argument("item", type=TEXT)
@click.argument("action", type=click.Choice(["like", "dislike", "skip", "open", "rate"]))
@click.argument("stars", type=float, required=False)
@fail_cleanly
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
    agent = open_agent_finishing_imports()
    result = agent.feedback(item, kind, stars, origin="cli")
    item_obj = agent.store.item(result.interaction.item_id)
    recorded = f"recorded {action}{f' {stars:g}' if stars is not None else ''} for {item_obj.display_title}"
    if kind == "open":  # opening is too weak a signal to re-rank on at once (Agent.feedback)
        click.echo(f"{recorded}; opening an item counts at your model's next full retrain")
        return
    note = " and retrained fully" if result.retrained else ""
    click.echo(f"{recorded}; updated your model in {result.update_ms:.1f} ms{note}")


@click.command()
@fail_cleanly
def undo() -> None:
    """Take back the feedback you gave last (it leaves your history; your model goes back to before it)."""
    agent = open_agent()
    last = agent.store.latest_interaction()
    if last is None:
        click.echo("nothing to undo: you have not given any feedback")
        return
    removed = agent.undo_feedback(last.id)
    item = agent.store.item(removed.item_id)
    value = f" {removed.value:g}" if removed.value is not None else ""
    click.echo(f"took back {removed.kind}{value} for {item.display_title}")


@click.command()
@click.argument("description", type=TEXT)
@fail_cleanly
def taste(description: str) -> None:
    """Describe your taste in a sentence, to steer the feed before (or beside) feedback."""
    agent = open_agent()
    agent.describe_taste(description)
    agent.store.set_state("onboarded", True)
    click.echo(f"noted: “{description}”")


@click.command()
@fail_cleanly
def retrain() -> None:
    """Retrain your personal model from all your feedback now."""
    stats = open_agent_finishing_imports().retrain()
    click.echo(f"retrained on {stats['labels']} rated items in {stats['seconds']:.2f} s "
               f"(adapter version {stats['version']})")


@click.group(cls=SectionedGroup)
def items() -> None:
    """Look through the catalog."""


@items.command("search")
@click.argument("text", type=TEXT)
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of items.")
@fail_cleanly
def items_search(text: str, limit: int, as_json: bool) -> None:
    """Find items whose title or text matches TEXT."""
    found = open_agent().search(text, limit)
    if as_json:
        emit_json([{"id": i.id, "ref": i.ref, "title": i.display_title, "text": i.text, "metadata": i.metadata}
                   for i in found])
        return
    if not found:
        click.echo(f"no items match {text!r}")
    for item in found:
        year = f" ({item.year})" if item.year else ""
        click.echo(f"[{item.id}] {item.display_title}{year}  {item.ref}")
