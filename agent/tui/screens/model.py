"""Your model: the chat LLM, its personal LoRA (train, cancel, resume, switch, export, reset) and
whether the LLM reranks the feed.

Training runs in a background thread (`Agent.start_lora_training`) that outlives this screen:
leave it and come back, the progress is still here; the app cancels it on quit, and the
checkpoint lets `t` resume where it stopped. Everything shown comes from `Agent.lora_status`,
read in a worker (it checks each version's sha256)."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, Header, Input, ProgressBar, Static

from agent.core.api import LoraTrainingSettings
from agent.tui.common import reported
from agent.tui.screens.confirm import ConfirmScreen

POLL_SECONDS = 0.5


class ExportScreen(ModalScreen[str | None]):
    """Ask for the folder to export the LoRA into."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm") as box:
            box.border_title = "Export your personal LoRA"
            yield Static("A folder for the adapter, an Ollama Modelfile and a note (enter exports, esc cancels):")
            yield Input(placeholder="~/ownrec-lora", id="export-path")
        yield Footer()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


class ModelScreen(Screen[bool]):
    """Dismisses with True when something that changes the feed changed (reranking switched)."""

    BINDINGS = [
        Binding("t", "train(False)", "Train/resume"),
        Binding("n", "train(True)", "Train anew"),
        Binding("x", "cancel_training", "Cancel"),
        Binding("o", "toggle_lora", "LoRA on/off"),
        Binding("k", "toggle_rerank", "Rerank on/off"),
        Binding("e", "export", "Export"),
        Binding("r", "reset", "Reset"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, training: LoraTrainingSettings | None = None) -> None:
        """`training`: the settings to train with (default: the product's)."""
        super().__init__()
        self.training = training
        self.feed_changed = False
        self.state: dict[str, Any] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="model"):
            yield Static(id="model-summary")
            yield ProgressBar(total=1, show_eta=False, id="training")
            yield Static(id="training-note")
            yield DataTable(cursor_type="row", zebra_stripes=True, id="lora-versions")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "your model"
        table = self.query_one("#lora-versions", DataTable)
        for label, key in (("version", "version"), ("trained", "created"), ("judgements", "examples"),
                           ("steps", "steps"), ("loss before → after", "loss"), ("file", "intact")):
            table.add_column(label, key=key)
        self.load_state()
        self.set_interval(POLL_SECONDS, self._poll)

    @property
    def job(self):
        return getattr(self.app, "lora_job", None)

    # -- state --------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="model-state")
    @reported
    def load_state(self) -> None:
        agent = self.app.agent
        state = agent.lora_status()
        state["model"] = agent.config.get("llm.model") or "SmolLM2-135M-Instruct (built in)"
        state["rerank"] = bool(agent.config.get("llm.rerank"))
        self.app.call_from_thread(self._show, state)

    def _show(self, state: dict[str, Any]) -> None:
        self.state = state
        active = state["active_version"]
        lora = (f"on, version {active}" if active is not None else
                "on, but no intact version" if state["enabled"] and state["versions"] else
                "off" if state["versions"] else "not trained yet")
        text = Text()
        text.append("chat model  ", style="bold")
        text.append(f"{state['model']}\n")
        text.append("personal LoRA  ", style="bold")
        text.append(f"{lora}\n")
        text.append("LLM reranks the feed  ", style="bold")
        text.append("on" if state["rerank"] else "off (EVALUATION.md says why)")
        text.append("\n\nThe LoRA learns from your likes and dislikes whether you would enjoy an item. It is "
                    "trained here, stays here, and fits only this base model.", style="dim")
        self.query_one("#model-summary", Static).update(text)
        table = self.query_one("#lora-versions", DataTable)
        table.clear()
        for row in state["versions"]:
            # The held-out loss where there is one: the training loss alone falls on any handful of examples.
            held_before, held_after = row.get("held_out_before"), row.get("held_out_after")
            before, after = row.get("loss_before"), row.get("loss_after")
            loss = (f"held out {held_before:.3f} → {held_after:.3f}" if held_before is not None and held_after is not None
                    else f"training {before:.3f} → {after:.3f}" if before is not None and after is not None else "—")
            table.add_row(str(row["version"]), time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created_at"])),
                          str(row.get("examples", "—")), str(row.get("steps", "—")), loss,
                          "ok" if row["intact"] else "damaged", key=str(row["version"]))
        self._poll()

    def _poll(self) -> None:
        bar = self.query_one("#training", ProgressBar)
        note = self.query_one("#training-note", Static)
        job = self.job
        if job is not None:
            status = job.status()
            bar.update(total=max(status["steps"], 1), progress=status["step"])
            if status["running"]:
                loss = f", loss {status['loss']:.3f}" if status["loss"] is not None else ""
                note.update(("cancelling after this step…" if status["cancelling"] else
                             f"training: step {status['step']} of {status['steps']}{loss} · x cancels"))
                return
            self.app.lora_job = None
            self._finished(job)
            return
        checkpoint = (self.state or {}).get("checkpoint")
        if checkpoint:
            bar.update(total=max(int(checkpoint.get("steps") or 1), 1), progress=int(checkpoint.get("step") or 0))
            note.update(f"a cancelled run stopped at step {checkpoint.get('step')} of {checkpoint.get('steps')}: "
                        "t resumes it, n starts anew")
        else:
            bar.update(total=1, progress=0)
            note.update("t trains on your feedback (a few minutes; the app stays usable)")

    def _finished(self, job) -> None:
        try:
            outcome = job.wait(0)
        except Exception as error:  # the worker's own error, kept for us
            self.notify(str(error) or type(error).__name__, title="training failed", severity="error", markup=False)
            self.load_state()
            return
        if outcome is not None and outcome.version is not None:
            result = outcome.result
            if result.held_out_before is not None and result.held_out_after is not None:
                figure = f"held-out loss {result.held_out_before:.3f} → {result.held_out_after:.3f}"
            elif result.loss_before is not None and result.loss_after is not None:
                figure = f"training loss {result.loss_before:.3f} → {result.loss_after:.3f}"
            else:
                figure = "no loss measured"
            self.notify(f"version {outcome.version} is on ({figure})", title="personal LoRA trained")
            if result.warning:
                self.notify(result.warning, title="personal LoRA", severity="warning", markup=False)
        elif outcome is not None:
            self.notify(f"stopped at step {outcome.result.step}; t resumes", title="training cancelled")
        self.load_state()

    # -- actions ------------------------------------------------------------------------

    def action_train(self, fresh: bool) -> None:
        if self.job is not None:
            self.notify("training is already running", title="ownrec")
            return
        self.app.lora_job = self.app.agent.start_lora_training(self.training or LoraTrainingSettings(), fresh=fresh)
        self._poll()

    def action_cancel_training(self) -> None:
        if self.job is None:
            self.notify("nothing is training", title="ownrec")
            return
        self.job.cancel()
        self._poll()

    @work(thread=True, exclusive=True, group="model-switch")
    @reported
    def action_toggle_lora(self) -> None:
        agent = self.app.agent
        agent.switch_lora(not agent.lora_status()["enabled"])
        self.load_state()

    def action_toggle_rerank(self) -> None:
        config = self.app.agent.config
        config.set("llm.rerank", "false" if config.get("llm.rerank") else "true")
        self.feed_changed = True
        self.load_state()

    def action_export(self) -> None:
        def chosen(folder: str | None) -> None:
            if folder:
                self.export(folder)

        self.app.push_screen(ExportScreen(), chosen)

    @work(thread=True, group="model-export")
    @reported
    def export(self, folder: str) -> None:
        from pathlib import Path

        written = self.app.agent.export_lora(Path(folder))
        self.app.call_from_thread(self.notify, f"written to {written['adapter'].parent}", title="exported",
                                  markup=False)

    def action_reset(self) -> None:
        if self.job is not None:
            self.notify("cancel the training first (x)", title="ownrec")
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self.reset()

        self.app.push_screen(ConfirmScreen("Reset your personal LoRA",
                                           "Delete every version and the training checkpoint? The chat model "
                                           "goes back to its base behaviour.", "Reset"), confirmed)

    @work(thread=True, group="model-switch")
    @reported
    def reset(self) -> None:
        count = self.app.agent.reset_lora()
        self.app.call_from_thread(self.notify, f"{count} version(s) deleted", title="personal LoRA reset")
        self.load_state()

    def action_back(self) -> None:
        self.dismiss(self.feed_changed)
