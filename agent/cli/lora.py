"""Your personal LoRA: the local language model learns, on this machine, which items you enjoy."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any

import click

from agent.cli.common import SectionedGroup, echo_err, emit_json, fail_cleanly, open_agent
from agent.core.api import LLMUnavailable, LoraTrainingSettings


def _lora_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The LoRA's own errors as one clear line; nothing was changed when one is raised."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # The facade does not re-export these; imported here so that other commands never load them.
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


@click.group(cls=SectionedGroup)
def lora() -> None:
    """Your personal LoRA: the local language model learns which items you enjoy.

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
@fail_cleanly
@_lora_errors
def lora_train(steps: int, resume: bool, batch: int, as_json: bool) -> None:
    """Train the personal LoRA and switch it on (Ctrl-C stops; the next run resumes)."""
    import signal
    import sys
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
        outcome = open_agent().train_lora(LoraTrainingSettings(steps=steps, batch=batch), fresh=not resume,
                                          progress=report, cancel=cancel, log=echo_err)
    except KeyboardInterrupt:
        raise click.ClickException("interrupted: the last checkpoint is kept; `ownrec lora train` resumes it") from None
    finally:
        if in_main_thread:
            signal.signal(signal.SIGINT, previous)
    if as_json:
        emit_json(outcome.as_dict())
        return
    result = outcome.result
    seconds = time.perf_counter() - started
    if result.cancelled:
        click.echo(f"stopped at step {result.step}/{result.steps}; `ownrec lora train` resumes")
        return
    before = ("" if result.loss_before is None else
              f"training loss {result.loss_before:.3f} -> {result.loss_after:.3f}, ")
    click.echo(f"personal LoRA v{outcome.version}: {result.counts.get('examples')} examples "
               f"({result.counts.get('positives')} yes, {result.counts.get('negatives')} no, "
               f"{result.counts.get('weak_negatives')} unrated as soft no), {before}{seconds:.0f} s; switched on")
    if result.held_out_before is not None and result.held_out_after is not None:
        stopped = (f"; stopped at step {result.step} of {result.steps}, as it no longer improved"
                   if result.stopped_early else "")
        click.echo(f"held out (never trained on): {result.held_out} examples, loss {result.held_out_before:.3f} -> "
                   f"{result.held_out_after:.3f} with the LoRA of step {result.best_step}, the one kept{stopped}")
    if result.warning:
        click.echo(f"warning: {result.warning}", err=True)


@lora.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print {enabled, active_version, versions, checkpoint}.")
@fail_cleanly
@_lora_errors
def lora_status(as_json: bool) -> None:
    """Whether the personal LoRA is on, its versions, and an unfinished run."""
    found = open_agent().lora_status()
    if as_json:
        emit_json(found)
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
            if row.get("held_out_before") is not None and row.get("held_out_after") is not None:
                loss += f", held out {row['held_out_before']:.3f} -> {row['held_out_after']:.3f}"
            damaged = "" if row["intact"] else "  DAMAGED (skipped)"
            click.echo(f"  v{row['version']}  {when}  {row.get('steps')} steps, {row.get('examples')} examples  "
                       f"{loss}{damaged}")
    if found["checkpoint"] is not None:
        note = found["checkpoint"]
        click.echo(f"unfinished run: step {note.get('step', '?')}/{note.get('steps', '?')} "
                   "(`ownrec lora train` resumes it, `--fresh` starts again)")


@lora.command("on")
@fail_cleanly
@_lora_errors
def lora_on() -> None:
    """Use the newest personal LoRA in the language model."""
    version = open_agent().switch_lora(True)
    click.echo(f"personal LoRA on (v{version})" if version is not None else "personal LoRA on")


@lora.command("off")
@fail_cleanly
@_lora_errors
def lora_off() -> None:
    """The language model answers without the personal LoRA (the versions are kept)."""
    open_agent().switch_lora(False)
    click.echo("personal LoRA off: `ownrec lora on` turns it back on")


@lora.command("reset")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@fail_cleanly
@_lora_errors
def lora_reset(yes: bool) -> None:
    """Delete every version of the personal LoRA and any unfinished run."""
    if not yes:
        click.confirm("Delete every version of your personal LoRA?", abort=True)
    count = open_agent().reset_lora()
    click.echo(f"deleted {count} version{'s' if count != 1 else ''} of the personal LoRA")


@lora.command("export")
@click.argument("folder", type=click.Path(file_okay=False, path_type=Path))
@fail_cleanly
@_lora_errors
def lora_export(folder: Path) -> None:
    """Copy the newest personal LoRA into FOLDER as a GGUF, with an Ollama Modelfile."""
    from agent.core.llm.model import choose_model

    agent = open_agent()
    try:
        base_path = choose_model(agent.config.get("llm.model") or "").path
    except LLMUnavailable:
        base_path = None
    written = agent.export_lora(folder, base_path)
    for path in written.values():
        click.echo(str(path))
