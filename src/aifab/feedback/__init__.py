"""The feedback half of the interaction log: users rate logged responses (up/down, a correction, a comment),
and the fine-tuning block reads interactions together with their feedback."""

from aifab.feedback.request import MAX_TEXT_BYTES, FeedbackInput, feedback_from_request
from aifab.feedback.store import Feedback, FeedbackStore, Interaction, utc, window

__all__ = ["MAX_TEXT_BYTES", "Feedback", "FeedbackInput", "FeedbackStore", "Interaction", "feedback_from_request",
           "utc", "window"]
