"""Flask-Mail messages as bytes: what ``Message.as_bytes()`` gives, with a fraction of the work.

Flask-Mail builds an ``email.mime`` tree for every message and serializes it with
``email.policy.SMTP``. Most of that time goes into parsing back header values the tree has
just stored (each part's ``Content-Type``, several times over) and into compiling a regular
expression for every MIME boundary. :func:`message_bytes` writes the same structure directly
for the messages the extension sends (a text body, alternatives such as HTML, no
attachments, UTF-8):

- every header is folded by the very ``policy.SMTP.fold_binary`` the generator calls (a
  header too short to be refolded is written as that method writes it, without the call),
  and the multipart ``Content-Type`` headers are folded by the policy once per process;
  the one deliberate difference: ``List-Unsubscribe`` and ``List-Unsubscribe-Post`` are
  written on one line as they are, where the generator would encode a long URL into RFC
  2047 words that mail providers do not read as a one-click unsubscribe;
- each body gets what Flask-Mail's UTF-8 charset gives it: ``7bit`` or ``8bit``, the text
  as UTF-8 with CRLF line ends;
- boundaries come from the same random draws the generator makes, and a draw is used only
  if its delimiter occurs nowhere in the parts (the generator checks whole lines only).

Any other message (attachments, ``Cc``, ``Reply-To``, another charset, a subclass that
builds its own MIME, a header the generator would refuse, any error) is left to
``message.as_bytes()`` itself, so an unusual message costs as much as before and comes out
(or fails) the same. ``tests/test_mime.py`` compares both byte for byte (the list headers
apart).
"""

from __future__ import annotations

import random
import re
import sys
from email import charset, policy
from email.utils import formatdate
from functools import lru_cache

from flask_mail import BadHeaderError, Message, force_text, sanitize_address, sanitize_addresses, sanitize_subject

__all__ = ["message_bytes", "sanitized_address"]

_POLICY = policy.SMTP
#: Flask-Mail's own methods: a message class (or a patch) that replaces one is left to ``as_bytes()``
_FLASK_MAIL = (Message.as_bytes, Message._message, Message._mimetext)
_NL = b"\r\n"
_BOUNDARY_WIDTH = len(repr(sys.maxsize - 1))
_SAMPLE_BOUNDARY = "=" * 15 + "0" * _BOUNDARY_WIDTH + "=="
#: a header name as RFC 5322 has it (printable ASCII but the colon)
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")
#: alternative subtypes written here (Flask-Mail's ``alts`` keys); any other goes to ``as_bytes``
_SUBTYPE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,30}\Z")
#: a line break not followed by folding white space: the generator of newer Pythons refuses it
_NEWLINE_WITHOUT_FWSP = re.compile(rb"\r\n[^ \t]|\r[^ \n\t]|\n[^ \t]")
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
#: what ``str.splitlines`` breaks at: never in a header name
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
#: headers written verbatim on one line (see :func:`_fold`)
_VERBATIM = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


class _Unusual(Exception):
    """Raised inside :func:`_build`: leave this message to ``as_bytes()``."""


def message_bytes(message: Message) -> bytes:
    """``message.as_bytes()``: the same bytes (given the same ``random`` state), built faster.

    A message this module does not write itself goes to ``message.as_bytes()``. A header
    that would put a line break on the wire (a CR or LF, a vertical tab, a form feed, a
    Unicode line separator ... in a subject, a header's value or name) raises Flask-Mail's
    ``BadHeaderError`` instead of being written: Flask-Mail checks CR and LF only, and the
    mail generator of older Pythons writes the rest as new header lines.
    """
    if _writable(message):
        try:
            return _build(message)
        except BadHeaderError:
            raise
        except Exception:  # unusual content: Flask-Mail's own way, with its own result or error
            pass
    for name in message.extra_headers or {}:
        if isinstance(name, str) and _LINE_BREAK.search(name):
            raise BadHeaderError(name)
    return message.as_bytes()


@lru_cache(maxsize=64)
def _sanitized(address: str) -> str:
    return sanitize_address(address, "utf-8")


def sanitized_address(address: str | tuple[str, str]) -> str:
    """Flask-Mail's ``sanitize_address(address)``, remembered for a string (a sender repeats)."""
    return _sanitized(address) if isinstance(address, str) else sanitize_address(address, "utf-8")


def _writable(message: Message) -> bool:
    cls = type(message)
    extra_headers = message.extra_headers or {}
    return (
        (cls.as_bytes, cls._message, cls._mimetext) == _FLASK_MAIL
        and not message.attachments
        and not message.cc
        and not message.reply_to
        and message.charset in (None, "utf-8")
        and isinstance(message.body, str)
        and isinstance(message.alts, dict)
        and isinstance(extra_headers, dict)
        and all(isinstance(k, str) and _SUBTYPE.match(k) and isinstance(v, str) for k, v in message.alts.items())
        and all(isinstance(k, str) and _FIELD_NAME.match(k) and isinstance(v, str) for k, v in extra_headers.items())
        and charset.CHARSETS.get("utf-8") == (charset.SHORTEST, None, "utf-8")  # Flask-Mail's, as it sets it
    )


def _fold(name: str, value: str) -> bytes:
    """``policy.SMTP.fold_binary(name, value)``, checked as newer generators check it.

    Except the RFC 2369 / RFC 8058 list headers: ``email.policy`` turns a long
    ``List-Unsubscribe`` (one unbreakable URL) into RFC 2047 encoded words, which mail
    providers do not read as an unsubscribe link. They are written on one line as they
    are (RFC 5322 allows 998 characters; RFC 2369 asks that no whitespace be put inside
    the brackets).
    """
    if name.lower() in _VERBATIM and value.isascii() and value.isprintable() and len(name) + len(value) + 2 <= 998:
        return f"{name}: {value}\r\n".encode("ascii")
    if value.isascii() and value.isprintable() and len(name) + len(value) + 2 <= _POLICY.max_line_length:
        return f"{name}: {value}\r\n".encode("ascii")  # what fold_binary returns for it, without refolding
    folded = _POLICY.fold_binary(name, value)
    if _NEWLINE_WITHOUT_FWSP.search(folded[:-2]):
        raise BadHeaderError(name)  # a new header line: an injection, never written
    if not folded.endswith(_NL):
        raise _Unusual(name)
    return folded


@lru_cache(maxsize=16)
def _content_type(value: str) -> bytes:
    """A part's ``Content-Type`` header as the generator writes it (``value`` without a boundary)."""
    return _fold("Content-Type", value)


@lru_cache(maxsize=8)
def _multipart_content_type(subtype: str) -> bytes:
    """``Content-Type: multipart/<subtype>; boundary="<sample>"``, as the generator writes a
    boundary it has just set (a parsed header, always refolded). Every boundary has the
    sample's length, so any other is written by putting it in the sample's place."""
    header = _POLICY.header_factory("Content-Type", f'multipart/{subtype}; boundary="{_SAMPLE_BOUNDARY}"')
    folded = _POLICY.fold_binary("Content-Type", header)
    if folded.count(_SAMPLE_BOUNDARY.encode()) != 1:
        raise _Unusual("Content-Type")
    return folded


def _text_part(text: str, subtype: str) -> tuple[bytes, bytes]:
    """Headers and body of ``MIMEText(text, subtype, "utf-8")`` under Flask-Mail's UTF-8 charset."""
    data = text.encode("utf-8")
    cte = b"7bit" if data.isascii() else b"8bit"
    data = _LINE_ENDS.sub(_NL, data) if b"\r" in data else data.replace(b"\n", _NL)
    head = b"".join(
        (
            _content_type(f'text/{subtype}; charset="utf-8"'),
            b"MIME-Version: 1.0\r\n",
            b"Content-Transfer-Encoding: " + cte + _NL,
        )
    )
    return head, data


def _multipart(subtype: str, parts: list[bytes]) -> tuple[bytes, bytes]:
    """Headers and body of a ``multipart/<subtype>`` holding the serialized ``parts``."""
    # email.generator's boundary, from the same draw: 15 "=", a zero-padded random number, "=="
    boundary = f"==============={random.randrange(sys.maxsize):0{_BOUNDARY_WIDTH}d}==".encode("ascii")
    delimiter = b"--" + boundary
    if any(delimiter in part for part in parts):
        raise _Unusual("boundary")  # the generator would look further (at whole lines only)
    head = _multipart_content_type(subtype).replace(_SAMPLE_BOUNDARY.encode(), boundary) + b"MIME-Version: 1.0\r\n"
    body = delimiter + _NL + (_NL + delimiter + _NL).join(parts) + _NL + delimiter + b"--" + _NL
    return head, body


def _build(message: Message) -> bytes:
    """``message`` as ``Message._message().as_bytes()`` writes it (see the module's docstring).

    The headers and the parts come first, so a message left to ``as_bytes()`` for them has
    drawn no boundary: ``as_bytes()`` then draws the ones it would have drawn anyway.
    """
    headers = []
    if message.subject:
        headers.append(_fold("Subject", sanitize_subject(force_text(message.subject), "utf-8")))
    headers.append(_fold("From", sanitized_address(message.sender)))
    headers.append(_fold("To", ", ".join(list(set(sanitize_addresses(message.recipients, "utf-8"))))))
    headers.append(_fold("Date", formatdate(message.date, localtime=True)))
    headers.append(_fold("Message-ID", message.msgId))
    for name, value in (message.extra_headers or {}).items():
        headers.append(_fold(name, value))
    plain = _text_part(message.body, "plain")
    if message.alts:
        texts = [head + _NL + body for head, body in (plain, *(_text_part(v, k) for k, v in message.alts.items()))]
        alternative = _multipart("alternative", texts)
        head, body = _multipart("mixed", [alternative[0] + _NL + alternative[1]])
    else:
        head, body = plain
    return b"".join((head, *headers, _NL, body))
