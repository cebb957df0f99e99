"""The ranked feed: one row per recommendation, keyed by the item's ref."""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.widgets import DataTable

from agent.core.api import Recommendation
from agent.tui.common import title_with_year

EXPLORING_MARK = "◆"
SEEN_MARK = "◦"  # opened before: still in the feed, as opening is not a judgement
RANK, MARK, SCORE = 3, 1, 5  # fixed column widths; title and reason share the rest


class FeedTable(DataTable):
    # Enter opens the details (DataTable's own enter binding is hidden from the footer). Home and End go to the
    # first and last item (DataTable's own scroll sideways, which a feed never needs).
    BINDINGS = [Binding("enter", "screen.details", "Details"),
                Binding("home", "first", "First item", show=False),
                Binding("end", "last", "Last item", show=False)]

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.recommendations: list[Recommendation] = []

    @property
    def current(self) -> Recommendation | None:
        if not self.recommendations or not 0 <= self.cursor_row < len(self.recommendations):
            return None
        return self.recommendations[self.cursor_row]

    def show(self, recommendations: list[Recommendation]) -> None:
        """Replace the rows, keeping the cursor at the same index."""
        self.recommendations = list(recommendations)
        self._rebuild()

    def drop(self, ref: str) -> None:
        """Remove one row at once (the re-ranked feed follows from a worker)."""
        self.recommendations = [r for r in self.recommendations if r.item.ref != ref]
        self.remove_row(ref)

    def action_first(self) -> None:
        if self.row_count:
            self.move_cursor(row=0)

    def action_last(self) -> None:
        if self.row_count:
            self.move_cursor(row=self.row_count - 1)

    def on_resize(self, event: events.Resize) -> None:
        # Column widths depend on the table width, so rebuild when it changes.
        self._rebuild()

    def _rebuild(self) -> None:
        row = self.cursor_row
        self.clear(columns=True)
        padding = 2 * self.cell_padding * 5
        rest = max((self.size.width or 100) - RANK - MARK - SCORE - padding - 2, 30)
        title = rest * 9 // 20
        self.add_column(Text("#", justify="right"), width=RANK, key="rank")
        self.add_column("", width=MARK, key="mark")
        self.add_column("title", width=title, key="title")
        self.add_column("why", width=rest - title, key="why")
        self.add_column(Text("score", justify="right"), width=SCORE, key="score")
        for rank, rec in enumerate(self.recommendations, 1):
            self.add_row(
                Text(str(rank), style="dim", justify="right"),
                (Text(EXPLORING_MARK, style="bold magenta") if rec.exploring
                 else Text(SEEN_MARK, style="dim") if rec.seen else ""),
                Text(title_with_year(rec.item) + (" · seen" if rec.seen else ""), overflow="ellipsis",
                     no_wrap=True, style="dim" if rec.seen else ""),
                Text(rec.reason, style="italic magenta" if rec.exploring else "dim",
                     overflow="ellipsis", no_wrap=True),
                Text(f"{rec.score:.2f}", justify="right"),
                key=rec.item.ref,
            )
        if self.row_count:
            self.move_cursor(row=min(row, self.row_count - 1))
