from agent.tui.screens.chat import ChatScreen
from agent.tui.screens.confirm import ConfirmScreen
from agent.tui.screens.details import DetailsScreen
from agent.tui.screens.feed import FeedScreen
from agent.tui.screens.model import ModelScreen
from agent.tui.screens.onboarding import OnboardingScreen
from agent.tui.screens.search import SearchScreen
from agent.tui.screens.start import StartScreen
from agent.tui.screens.traits import TraitsScreen, TraitValueScreen

__all__ = ["ChatScreen", "ConfirmScreen", "DetailsScreen", "FeedScreen", "ModelScreen", "OnboardingScreen", "SearchScreen", "StartScreen",
           "TraitValueScreen", "TraitsScreen"]
