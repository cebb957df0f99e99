"""The public prior ("release 0"): what the ranker knows about the catalog's items from public data."""

from __future__ import annotations

import time
from pathlib import Path

import click

from agent.cli.common import SectionedGroup, fail_cleanly, open_agent, report_progress


@click.group(cls=SectionedGroup)
def prior() -> None:
    """The public prior: what ownrec learned about the catalog's items from public ratings.

    \b
    Examples:
      ownrec prior status                       # what the feed's prior was built from
      ownrec prior build                        # from the demo's public MovieLens ratings
      ownrec prior build public-ratings.csv     # from any public ratings file
      ownrec prior export release-0.bin         # for `ownrec coordinator serve --prior`

    The prior is learned on this device from other people's public ratings, never from yours,
    and kept in your data folder. Until a federation's release is adopted, the feed ranks with it.
    """


@prior.command("build")
@click.argument("ratings", type=click.Path(dir_okay=False, path_type=Path), required=False)
@fail_cleanly
def prior_build(ratings: Path | None) -> None:
    """Learn the prior from RATINGS, a public ratings file, or the demo's MovieLens ratings.

    \b
    RATINGS is CSV (a header on line 1) or JSONL (.jsonl), one row per interaction:
      user      required: the person's id in that dataset (never stored)
      item      required: the catalog item as source:external_id (or columns source and id)
      at        optional: when it was made (ISO 8601 or unix seconds)
    Every row counts as one interaction; a rating column is ignored. Each person's
    order (by `at` when every row has one, else the file's) gives what people went
    on to like after each item, which steers the feed after your latest likes.
    Rows with items outside your catalog are counted and left out.
    """
    from agent.core.sync.prior import PriorUnavailable

    agent = open_agent()
    try:
        report = agent.build_prior(ratings, progress=report_progress("learning release 0 (epochs)"))
    except PriorUnavailable as error:
        raise click.ClickException(str(error)) from None
    for problem in report.problems:
        click.echo(f"skipped {problem}", err=True)
    click.echo(report.summary())


@prior.command("status")
@fail_cleanly
def prior_status() -> None:
    """What the feed's public prior was built from, and when."""
    report = open_agent().prior_status()
    if report is None:
        click.echo("no public prior: the feed learns from your feedback and the items' text alone. "
                   "`ownrec prior build` makes one (the demo catalog has one from its import).")
        return
    click.echo(report.summary())
    click.echo(f"built {time.strftime('%Y-%m-%d %H:%M', time.localtime(report.built_at))}")


@prior.command("export")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@fail_cleanly
def prior_export(path: Path) -> None:
    """Write the prior to PATH, for a coordinator to start from (`ownrec coordinator serve --prior PATH`)."""
    try:
        written = open_agent().export_prior(path)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"wrote {written}")
