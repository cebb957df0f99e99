"""Your settings, models and data folder: config, models prepare, doctor, and export or forget all your data."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import click

from agent.cli.common import SectionedGroup, echo_err, emit_json, fail_cleanly, open_agent
from agent.cli.recovery import table_lines
from agent.core import paths
from agent.core.api import Agent
from agent.core.config import SETTINGS, Config, ConfigError
from agent.core.api.salvage import DatabaseDamaged


@click.group(cls=SectionedGroup)
def config() -> None:
    """Read and change settings (stored in config.toml in the data directory)."""


@config.command("list")
@fail_cleanly
def config_list() -> None:
    """Every setting, its value, and what it does."""
    config = Config(lenient=True)
    if config.problems:
        click.echo(str(config.problem_error()), err=True)
    for setting, value, is_set in config.items():
        origin = "" if is_set else " (default)"
        click.echo(f"{setting.key} = {value!r}{origin}\n    {setting.help}")
    for key, problem in config.problems.items():
        click.echo(f"{key}: refused, {problem.removeprefix(key + ': ')}")


@config.command("get")
@click.argument("key")
@fail_cleanly
def config_get(key: str) -> None:
    """Print the value of KEY."""
    click.echo(Config(lenient=True).get(key))


@config.command("set")
@click.argument("key", type=click.Choice(sorted(SETTINGS), case_sensitive=True), metavar="KEY")
@click.argument("value")
@fail_cleanly
def config_set(key: str, value: str) -> None:
    """Set KEY to VALUE (checked against the setting's type and range).

    llm.model takes a name from `ownrec models list` (ollama:MODEL:TAG, lmstudio:PUBLISHER/REPO/FILE.gguf),
    a GGUF file's path, or `default` for the built-in model.
    """
    config = Config(lenient=True)  # the way to repair a bad entry of a hand-edited file
    model = None
    if key == "llm.model":
        from agent.core.llm.discovery import setting_for

        value, model = setting_for(value, int(config.get("llm.context")))
    stored = config.set(key, value)
    click.echo(f"{key} = {stored!r}")
    if model is not None:
        click.echo(f"  {_model_summary(model)}")
        if model.fits is False:
            click.echo(f"  note: it needs about {_mb(model.memory_needed)} of memory with a "
                       f"{config.get('llm.context')}-token context, more than is free now; `ownrec ask` will "
                       "say so until enough is", err=True)
        if model.note or model.problem:  # the built-in model is chosen even when its package is broken
            click.echo(f"  note: {model.note or model.problem}", err=True)


@config.command("unset")
@click.argument("key")
@fail_cleanly
def config_unset(key: str) -> None:
    """Return KEY to its default."""
    Config(lenient=True).unset(key)
    click.echo(f"{key} reset to its default")


@click.group(cls=SectionedGroup)
def models() -> None:
    """List the chat models you have (built in, Ollama's, LM Studio's) and prepare the local models."""


def _mb(size: int | None) -> str:
    if size is None:
        return "?"
    if size >= 2**30:
        return f"{size / 2**30:,.1f} GB"
    return f"{size / 2**20:,.0f} MB" if size >= 2**20 else f"{max(size, 1) / 2**10:,.0f} KB"


def _model_summary(model) -> str:
    facts = [model.title or Path(model.path).name, model.architecture, model.parameters, model.quantization,
             _mb(model.size) if model.size else ""]
    return ", ".join(fact for fact in facts if fact)


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the models and the folders searched as JSON.")
@fail_cleanly
def models_list(as_json: bool) -> None:
    """The GGUF chat models you already have: the built-in one, Ollama's and LM Studio's.

    Only each file's header is read (nothing is loaded). The one in use (llm.model) is marked `*`;
    choose another with `ownrec config set llm.model NAME`.
    """
    from dataclasses import asdict

    from agent.core.llm.discovery import list_models

    config = Config()
    found = list_models(str(config.get("llm.model")), int(config.get("llm.context")))
    if as_json:
        emit_json(asdict(found))
        return
    rows = [("", "NAME", "FROM", "PARAMS", "QUANT", "SIZE", "MAX CTX", "CHAT", "FITS")]
    for model in found.models:
        readable = bool(model.architecture)
        origin = f"{model.source} ({model.title})" if model.source == "built-in" else model.source
        rows.append(("*" if model.in_use else "", model.name, origin, model.parameters or "-", model.quantization or "-",
                     _mb(model.size), f"{model.context_length:,}" if model.context_length else "-",
                     ("yes" if model.usable else "no") if readable else "-",
                     {True: "yes", False: "no", None: "?"}[model.fits] if model.usable else "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for at, row in enumerate(rows):
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        model = found.models[at - 1] if at else None
        if model is not None and model.problem:
            click.echo(f"    cannot be used: {model.problem}")
        elif model is not None and model.note:
            click.echo(f"    note: {model.note}")
    free = "unknown" if found.available_memory is None else _mb(found.available_memory)
    click.echo(f"\nMAX CTX: the longest context the model was trained for; ownrec uses llm.context "
               f"({found.context:,} tokens).\nFITS: whether the weights and that {found.context:,}-token context fit "
               f"in the memory free now ({free}).")
    click.echo("\nFolders searched:")
    for folder in found.folders:
        state = (f"{folder.found} model{'s' if folder.found != 1 else ''}" if folder.exists else "not there")
        click.echo(f"  {folder.source:<8}  {folder.path}  ({folder.why}): {state}")
    if found.setting_problem:
        click.echo(f"\n{found.setting_problem}\n  fix: `ownrec config set llm.model NAME` with a NAME above, "
                   "or `ownrec config unset llm.model` for the built-in model", err=True)
    else:
        click.echo("\nUse one: ownrec config set llm.model NAME   (back to the built-in: ownrec config unset llm.model)")


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
    """Check the models, the settings, the database and the versions, and say what to fix."""
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
    """Write all your personal data (feedback, items, settings, model parameters) as JSON.

    From a damaged database, writes every row still readable, says what was lost, and exits with 1.
    """
    try:
        exported, recovery = open_agent().export(), None
    except DatabaseDamaged:
        exported, recovery = Agent.export_readable()
    exported, not_finite = _finite(exported, "")
    data = json.dumps(exported, indent=2, ensure_ascii=False, allow_nan=False)
    if output is None:
        click.echo(data)
    else:
        from agent.core.atomic import write_text_atomic

        write_text_atomic(output, data)
        click.echo(f"wrote {output}", err=True)
    if not_finite:
        shown = ", ".join(not_finite[:5]) + (f" and {len(not_finite) - 5} more" if len(not_finite) > 5 else "")
        echo_err(f"note: {len(not_finite)} stored value{'s' if len(not_finite) > 1 else ''} not a finite number "
                 f"(NaN or infinity, which JSON cannot hold) written as null: {shown}")
    if recovery is not None:
        echo_err(f"The database {recovery.source} is damaged: this export holds only the rows that could be read "
                 "(its `recovered_from_damage` says the same):")
        for line in table_lines(recovery):
            echo_err(line)
        raise click.ClickException("the export is incomplete because the database is damaged; `ownrec recover` "
                                   "saves the same rows into a new database you can switch to")


def _finite(value, where: str) -> tuple[object, list[str]]:
    """`value` with every NaN and infinity replaced by None, and where each was (`items[3].published`)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None, [where]
    if isinstance(value, dict):
        pairs = [(key, _finite(item, f"{where}.{key}" if where else str(key))) for key, item in value.items()]
        return {key: kept for key, (kept, _) in pairs}, [spot for _, (_, spots) in pairs for spot in spots]
    if isinstance(value, list):
        parts = [_finite(item, f"{where}[{at}]") for at, item in enumerate(value)]
        return [kept for kept, _ in parts], [spot for _, spots in parts for spot in spots]
    return value, []


@click.command()
@click.option("--all", "everything", is_flag=True, required=True, help="Required: forget everything.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@fail_cleanly
def forget(everything: bool, yes: bool) -> None:
    """Delete all your personal data: feedback, model, settings (the models stay cached)."""
    home = paths.data_dir()
    if not yes:
        click.confirm(f"Delete everything ownrec knows about you in {home}?", abort=True)
    try:
        agent = open_agent()
    except (DatabaseDamaged, ConfigError):  # forgetting needs neither a readable database nor valid settings
        removed = paths.Home.default().remove_owned()
    else:
        removed = agent.forget_all()
    click.echo(f"deleted {len(removed)} files and folders from {home}")
