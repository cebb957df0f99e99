"""The personal ranker: adapters (the learned parameters), scoring, training and slates."""

from agent.core.ranker.adapters import AdapterError, GlobalAdapter, PersonalAdapter, load_personal, save_personal
from agent.core.ranker.co_liked import CO_LIKED_ITEMS
from agent.core.ranker.model import RECENT_ITEMS, SIGNALS, Catalog, Scorer, signal_features
from agent.core.ranker.history import FeedbackHistory, FeedbackRows, LabelledRows
from agent.core.ranker.explain import EXPLAINING_LIKES, Explanation, explain, reason_text
from agent.core.ranker.recommendation import Recommendation
from agent.core.ranker.slate import SlateEntry, build_slate, mmr
from agent.core.ranker.feedback import (
    UNJUDGED_KINDS,
    judgement,
    latest_judgements,
    preference_labels,
    rating_signal,
    recent_likes,
)
from agent.core.ranker.training import TrainingSettings, fit, online_update

__all__ = [
    "CO_LIKED_ITEMS", "EXPLAINING_LIKES", "RECENT_ITEMS", "SIGNALS", "AdapterError", "Catalog", "Explanation", "FeedbackHistory", "FeedbackRows", "GlobalAdapter",
    "LabelledRows", "PersonalAdapter", "Recommendation", "Scorer", "SlateEntry",
    "TrainingSettings", "UNJUDGED_KINDS", "build_slate", "fit", "judgement", "latest_judgements", "load_personal", "mmr", "online_update",
    "preference_labels", "rating_signal", "reason_text", "explain", "recent_likes", "save_personal", "signal_features",
]
