from agent.tui.widgets.feed_table import FeedTable
from agent.tui.widgets.item_card import ItemCard

__all__ = ["FeedTable", "ItemCard"]
