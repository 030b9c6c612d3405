"""What Django's debug page (DEBUG=true only) and error reports may show of settings and of
a traceback's variables: never a credential.

Django's own filter hides settings whose *names* contain KEY, SECRET, PASS, TOKEN, API or
SIGNATURE; ``DATABASE_URL`` and ``CHAT_LISTEN_DATABASE_URL`` hold a password in their
*values* and were shown in full. This filter hides those names too, and any value,
setting or local variable, that carries a password in a URL (``scheme://user:pw@host``) or
in a libpq ``password=`` pair. (config/settings.py names both classes.)
"""

from __future__ import annotations

import re
from types import FrameType
from typing import Any

from django.http import HttpRequest
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# A password in a URL's userinfo, or a libpq key=value password.
_CREDENTIAL = re.compile(r"://[^/\s@]*:[^/\s@]*@|\bpassword\s*=", re.IGNORECASE)


def holds_credential(value: object) -> bool:
    # type(), not isinstance(): a lazy proxy claims to be a str and is not one
    return type(value) is str and _CREDENTIAL.search(value) is not None


class CredentialFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile(
        "API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|DATABASE_URL|DSN", flags=re.IGNORECASE
    )

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        if holds_credential(value):
            return self.cleansed_substitute
        return super().cleanse_setting(key, value)

    def get_traceback_frame_variables(
        self, request: HttpRequest | None, tb_frame: FrameType
    ) -> Any:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        return [
            (name, self.cleansed_substitute if holds_credential(value) else value)
            for name, value in variables
        ]


class Reporter(ExceptionReporter):
    """Django's debug page, also for a request whose body Django refused to parse.

    A form declaring ``charset=latin-1`` makes ``request.POST`` raise BadRequest; Django
    answers 400, but under DEBUG its page for that 400 reads ``request.POST`` again, raises
    again, and the client got a bare 500. Such a report is made without the request.
    """

    def get_traceback_data(self) -> dict[str, Any]:
        try:
            return super().get_traceback_data()
        except Exception:
            self.request = None
            return super().get_traceback_data()
