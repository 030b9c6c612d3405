"""Validation of what people type: the same rules as the database's CHECK constraints, said
as a clear message before the database has to refuse it."""

from __future__ import annotations

import re
from typing import Any

from confusable_homoglyphs import confusables
from django import forms
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import ValidationError

from .models import DIRECT_SLUG_REGEX, MESSAGE_MAX_LENGTH, Room


def message_text(data: dict[str, Any]) -> str:
    """The ``text`` field of a request, valid for chat_chatmessage; raises ValidationError."""
    text = data.get("text")
    if not isinstance(text, str):
        raise ValidationError("text is required and must be a string", code="required")
    if "\x00" in text:  # PostgreSQL text cannot hold NUL
        raise ValidationError("text must not contain NUL characters", code="invalid")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON "\ud800" escape
        raise ValidationError("text must be valid Unicode", code="invalid") from None
    if not text.strip():
        raise ValidationError("text must not be empty", code="blank")
    if len(text) > MESSAGE_MAX_LENGTH:
        raise ValidationError(
            f"text is {len(text)} characters; the limit is {MESSAGE_MAX_LENGTH}",
            code="max_length",
        )
    return text


# Said by the form's own check, and by the view when a create loses a race to another.
SLUG_TAKEN = "This address is already taken."


# [type-arg] below: both forms are generic in django-stubs only; subscripting them would fail
# at runtime without django-stubs-ext's monkeypatch, a runtime dependency for the types alone.
class SignUpForm(UserCreationForm):  # type: ignore[type-arg]
    """Django's own sign-up form: username and password twice, with the validators."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")  # "Username", not "Username:", as on log in
        super().__init__(*args, **kwargs)

    def clean_username(self) -> str:
        """Django's field has already NFKC-normalised the name (a full-width A is an A), and
        its form refuses one differing only in case. Refused here too: a name mixing scripts
        with letters that look like another script's ("alice" with a Cyrillic a, U+0430), made
        to pass for someone else. A name in one script, any script, is welcome."""
        username = super().clean_username()  # falsy when refused already
        if username and confusables.is_dangerous(username):
            raise ValidationError(
                "This name mixes alphabets with look-alike letters (such as a Cyrillic "
                "\u201c\u0430\u201d among Latin ones). Use letters of one alphabet.",
                code="confusable",
            )
        return username


class RoomForm(forms.ModelForm):  # type: ignore[type-arg]
    """Create a room; the view makes its creator its owner and first member."""

    TAKEN = SLUG_TAKEN

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def clean_slug(self) -> str:
        # The constraint chat_room_direct_shape says it too, but Django's form validation
        # skips a constraint naming a field the form lacks (is_direct): say it here.
        slug: str = self.cleaned_data["slug"]
        if re.match(DIRECT_SLUG_REGEX, slug):
            raise ValidationError("Addresses like dm-1-2 are kept for direct messages.")
        return slug

    class Meta:
        model = Room
        fields = ["slug", "title", "is_private"]
        labels = {"slug": "Address", "is_private": "Private room"}
        error_messages = {"slug": {"unique": SLUG_TAKEN}}
        # Django renders help texts as HTML (|safe): write "&lt;", never a bare "<".
        help_texts = {
            "slug": "Letters, digits, - and _: the room will be at /rooms/&lt;address&gt;/.",
            "title": "Optional: shown instead of the address.",
            "is_private": "Only members and staff can see it. You own it: you add and "
            "remove its members.",
        }
