"""What one trait means and why it reads what it reads: its poles and its evidence."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from agent.core.api import Evidence, TraitEdit, TraitReading
from agent.tui.common import title_with_year


def judgement(label: float) -> str:
    """How the person judged an item, from its preference label (-1..1)."""
    if label >= 0.75:
        return "liked"
    if label > 0:
        return "leaned towards"
    if label <= -0.75:
        return "disliked"
    return "leaned away from"


def evidence_line(evidence: Evidence) -> Text:
    return Text.assemble(
        (judgement(evidence.label), "dim"), " ", (title_with_year(evidence.item), "bold"),
        (" · ", "dim"), f"sits at {evidence.percentile:.0%} on this axis",
        (" · ", "dim"), ("pushed it up" if evidence.pull > 0 else "pulled it down"),
    )


class TraitDetail(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.reading: TraitReading | None = None
        self.lines: list[Text] = []

    @property
    def plain(self) -> str:
        """What the panel says, as plain text."""
        return "\n".join(line.plain for line in self.lines)

    def show(self, reading: TraitReading | None, edits: list[TraitEdit] | None = None) -> None:
        """`edits`: this trait's latest edits, newest first."""
        self.reading = reading
        if self.parent is not None:
            self.parent.border_title = reading.name if reading else "trait"
        self.lines = self._lines(reading)
        if reading is not None and edits:
            self.lines += [Text(), Text("your edits", style="bold")]
            self.lines += [Text(f"  {edit.describe()}", style="dim" if edit.undone else "") for edit in edits]
        self.update(Group(*self.lines))

    @staticmethod
    def _lines(r: TraitReading | None) -> list[Text]:
        if r is None:
            return [Text("no traits to show", style="dim")]
        lines: list[Text] = []
        if r.meaning:
            lines.append(Text(r.meaning, style="italic"))
        lines.append(Text.assemble(("0 ", "bold"), r.low, ("   ·   ", "dim"), ("1 ", "bold"), r.high))
        if r.hidden:
            lines += [Text(), Text("Hidden: not shown, not used for ranking and not exported. Press v to show it "
                                   "and use it again.", style="dim")]
            return lines
        facts = [f"{r.value:.2f}", f"{r.confidence or 0:.0%} sure"]
        facts += ["pinned: training leaves it where it is"] if r.pinned else []
        facts += ["edited by you (r resets to what ownrec infers)"] if r.edited else []
        lines += [Text(" · ".join(facts), style="dim"), Text()]
        if r.evidence:
            lines.append(Text("evidence", style="bold"))
            lines += [Text.assemble("  ", evidence_line(e)) for e in r.evidence]
        else:
            lines.append(Text("no evidence yet", style="dim"))
        return lines
