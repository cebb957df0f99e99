from agent.tui.screens.details import DetailsScreen
from agent.tui.screens.feed import FeedScreen
from agent.tui.screens.onboarding import OnboardingScreen
from agent.tui.screens.search import SearchScreen
from agent.tui.screens.start import StartScreen

__all__ = ["DetailsScreen", "FeedScreen", "OnboardingScreen", "SearchScreen", "StartScreen"]
