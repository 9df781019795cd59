"""E-mail .eml and .mbox (stdlib email): headers, the decoded body and attachment names.

The body is the text/plain part when there is one, else the HTML part's readable text; quoted-
printable and base64 are decoded, charsets honoured. An mbox holds one span per message, located
by its subject.
"""

from __future__ import annotations

import itertools
import re
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from core.loaders.base import LoadedText, LoadOptions, UnreadableFile
from core.loaders.spans import TextBuilder

HEADERS = ("From", "To", "Cc", "Date", "Subject")
_MBOX_FROM = re.compile(rb"^From [^\n]*\n", re.MULTILINE)  # the line that starts each message
_QUOTED_FROM = re.compile(rb"^>(>*From )", re.MULTILINE)  # mboxrd's escaped "From " lines


def load_email(data: bytes, path: Path, kind: str, options: LoadOptions) -> LoadedText:
    builder = TextBuilder()
    if path.suffix.lower() == ".mbox" or data.startswith(b"From "):
        starts = [m.start() for m in _MBOX_FROM.finditer(data)]
        if not starts or starts[0] != 0:
            raise UnreadableFile("not an mbox file (it must start with a 'From ' line)")
        bounds = [*starts, len(data)]
        for number, (start, end) in enumerate(itertools.pairwise(bounds), start=1):
            body = data[start:end].split(b"\n", 1)[1] if b"\n" in data[start:end] else b""
            message = _parse(_QUOTED_FROM.sub(rb"\1", body))
            if message is None:
                builder.notes.append(f"message {number}: no e-mail headers, skipped")
                continue
            subject = _header(message, "Subject")
            builder.add(_message_text(message), subject or f"message {number}", subject)
        return builder.result(kind)
    message = _parse(data)
    if message is None:
        raise UnreadableFile("not an e-mail message (no headers)")
    subject = _header(message, "Subject")
    builder.add(_message_text(message), subject or "message", subject)
    return builder.result(kind, subject)


def _parse(data: bytes) -> EmailMessage | None:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)  # policy.default makes EmailMessage objects
    if not any(message.get(name) for name in (*HEADERS, "Message-ID", "Received")):
        return None
    return message


def _message_text(message: EmailMessage) -> str:
    lines = [f"{name}: {value}" for name in HEADERS if (value := _header(message, name))]
    body = _body(message)
    attachments = [part.get_filename() or part.get_content_type() for part in _attachments(message)]
    parts = ["\n".join(lines), body]
    if attachments:
        parts.append("Attachments: " + ", ".join(attachments))
    return "\n\n".join(p for p in parts if p)


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a malformed header the parser cannot fold
        return ""
    return " ".join(str(value).split()) if value is not None else ""


def _body(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    assert isinstance(part, EmailMessage)
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset, a damaged encoding
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""
    if not isinstance(content, str):
        return ""
    if part.get_content_subtype() == "html":
        from core.loaders.html import html_text

        return html_text(content).text
    return content.replace("\r\n", "\n").strip()


def _attachments(message: EmailMessage) -> list[EmailMessage]:
    try:
        return [p for p in message.iter_attachments() if isinstance(p, EmailMessage)]
    except (KeyError, TypeError, AttributeError):
        return []
