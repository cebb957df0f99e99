from agent.tui.widgets.feed_table import FeedTable
from agent.tui.widgets.item_card import ItemCard
from agent.tui.widgets.trait_detail import TraitDetail
from agent.tui.widgets.trait_list import TraitList, TraitRow, ValueBar

__all__ = ["FeedTable", "ItemCard", "TraitDetail", "TraitList", "TraitRow", "ValueBar"]
