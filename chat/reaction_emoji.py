"""What a reaction may be: exactly one emoji, checked against the Unicode emoji list.

Input is a single emoji (``"👍"``, ``"👍🏽"``, ``"🇫🇷"``, ``"👨‍👩‍👧"``) or a short name from the
emoji library's fixed list (``":thumbs_up:"``, ``":+1:"``); either is stored as the
fully-qualified emoji, so ``"❤"`` and ``"❤️"`` count as one. Anything else (text, two
emoji, a lone skin-tone modifier or joiner) is refused before it reaches the database,
whose CHECK (chat/models/reactions.py, ``REACTION_SQL_PATTERN``) only keeps psql writers
to something emoji-shaped.

Why the ``emoji`` package: it carries the Unicode Consortium's emoji list (RGI sequences
included, with their qualification status) and its short names, kept up to date with each
Unicode release; a regular expression of our own would either refuse real sequences or let
odd ones through.
"""

from __future__ import annotations

import emoji

from .models import REACTION_MAX_LENGTH

_FULLY_QUALIFIED = emoji.STATUS["fully_qualified"]
_COMPONENT = emoji.STATUS["component"]


class InvalidEmoji(ValueError):
    """Not a single emoji nor a known short name."""


def normalize(raw: object) -> str:
    """The fully-qualified emoji ``raw`` stands for; raises InvalidEmoji."""
    if not isinstance(raw, str) or not raw or len(raw) > 64:
        raise InvalidEmoji("emoji must be a single emoji, e.g. \U0001f44d, or a :short_name:")
    text = raw
    if text.startswith(":") and text.endswith(":"):
        text = emoji.emojize(text, language="alias")
    data = emoji.EMOJI_DATA.get(text)
    if data is None or data["status"] == _COMPONENT:
        raise InvalidEmoji(f"not a single emoji: {raw[:20]!r}")
    if data["status"] != _FULLY_QUALIFIED:  # "❤" -> "❤️": one spelling per emoji
        text = emoji.emojize(emoji.demojize(text))
    if text not in emoji.EMOJI_DATA or len(text) > REACTION_MAX_LENGTH:
        raise InvalidEmoji(f"not a single emoji: {raw[:20]!r}")
    return text
