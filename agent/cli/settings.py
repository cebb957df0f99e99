"""Your settings, models and data folder: config, models prepare, doctor, and export or forget all your data."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from agent.cli.common import SectionedGroup, echo_err, emit_json, fail_cleanly, open_agent
from agent.core import paths
from agent.core.config import SETTINGS, Config


@click.group(cls=SectionedGroup)
def config() -> None:
    """Read and change settings (stored in config.toml in the data directory)."""


@config.command("list")
@fail_cleanly
def config_list() -> None:
    """Every setting, its value, and what it does."""
    for setting, value, is_set in Config().items():
        origin = "" if is_set else " (default)"
        click.echo(f"{setting.key} = {value!r}{origin}\n    {setting.help}")


@config.command("get")
@click.argument("key")
@fail_cleanly
def config_get(key: str) -> None:
    """Print the value of KEY."""
    click.echo(Config().get(key))


@config.command("set")
@click.argument("key", type=click.Choice(sorted(SETTINGS), case_sensitive=True), metavar="KEY")
@click.argument("value")
@fail_cleanly
def config_set(key: str, value: str) -> None:
    """Set KEY to VALUE (checked against the setting's type and range)."""
    stored = Config().set(key, value)
    click.echo(f"{key} = {stored!r}")


@config.command("unset")
@click.argument("key")
@fail_cleanly
def config_unset(key: str) -> None:
    """Return KEY to its default."""
    Config().unset(key)
    click.echo(f"{key} reset to its default")


@click.group(cls=SectionedGroup)
def models() -> None:
    """Prepare the local models (derived from installed PyPI packages)."""


@models.command("prepare")
@click.option("--force", is_flag=True, help="Rebuild even if the prepared files check out.")
@fail_cleanly
def models_prepare(force: bool) -> None:
    """Prepare the text encoder and the default chat model in the models folder.

    Exports the text encoder to ONNX and quantizes it to int8 (needs the `models` extra), and
    writes the default chat model's Q8_0 runtime copy (faster prompt evaluation on a CPU).
    """
    from agent.core.llm.model import LLMUnavailable, default_model_path, default_runtime_file, verify_default
    from agent.core.model_prep import prepare_encoder

    path = prepare_encoder(paths.models_dir(), force=force, log=echo_err)
    click.echo(f"encoder ready in {path}")
    cache = paths.models_dir() / "llm"
    try:
        source = default_model_path()
        verify_default(source, cache)
        runtime = default_runtime_file(source, cache, log=echo_err, force=force)
    except LLMUnavailable as error:  # the encoder is ready; the chat model is optional
        click.echo(f"chat model not prepared: {error.problem}\n  fix: {error.fix}", err=True)
        return
    click.echo(f"chat model ready: {runtime}")


@click.command()
@click.option("--json", "as_json", is_flag=True)
def doctor(as_json: bool) -> None:
    """Check the models, the database and the versions, and say what to fix."""
    from agent.core.doctor import run_checks

    checks = run_checks()
    if as_json:
        emit_json([c.__dict__ for c in checks])
    else:
        for check in checks:
            mark = "ok " if check.ok else "FIX"
            click.echo(f"[{mark}] {check.name}: {check.detail}")
            if not check.ok and check.fix:
                click.echo(f"      fix: {check.fix}")
    if not all(c.ok for c in checks):
        sys.exit(1)


@click.command()
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to this file instead of standard output.")
@fail_cleanly
def export(output: Path | None) -> None:
    """Write all your personal data (feedback, items, settings, model parameters) as JSON."""
    data = json.dumps(open_agent().export(), indent=2, ensure_ascii=False)
    if output is None:
        click.echo(data)
    else:
        from agent.core.atomic import write_text_atomic

        write_text_atomic(output, data)
        click.echo(f"wrote {output}", err=True)


@click.command()
@click.option("--all", "everything", is_flag=True, required=True, help="Required: forget everything.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@fail_cleanly
def forget(everything: bool, yes: bool) -> None:
    """Delete all your personal data: feedback, model, settings (the models stay cached)."""
    home = paths.data_dir()
    if not yes:
        click.confirm(f"Delete everything ownrec knows about you in {home}?", abort=True)
    removed = open_agent().forget_all()
    click.echo(f"deleted {len(removed)} files and folders from {home}")
