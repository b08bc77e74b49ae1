"""Flask-Mail messages as they go on the wire: the standard library's ``EmailMessage``.

The extension builds its mail as :class:`flask_mail.Message` (the type hosts know, what
``preview-followup`` prints and tests read) and sends it as :func:`email_message` makes it:
an :class:`email.message.EmailMessage` under a clone of :data:`email.policy.SMTP`, built
from the message's public attributes with the ``email`` package's public API (headers,
``set_payload``, ``set_content``, ``add_attachment``). What that changes on the wire:

- **No line longer than RFC 5322's 998 octets**, whatever staff typed. A text part whose
  lines all fit goes as ``7bit`` (ASCII) or ``8bit`` (to a server that announces 8BITMIME,
  declared with ``BODY=8BITMIME``); any other part is left to the standard library, which
  encodes it as quoted-printable or base64. (Flask-Mail writes 8-bit lines of any length,
  and a strict server, aiosmtpd's default or Exim's, answers 500 to a long one.)
- **Headers folded by the policy**, non-ASCII text as RFC 2047 encoded words (unstructured
  text such as the subject encoded whole by :class:`email.header.Header`: the policy's
  folder in Python 3.11 can fold at a space between two encoded words, which a reader then
  drops, ``к нам`` read as ``кнам``), except ``List-Unsubscribe`` and
  ``List-Unsubscribe-Post``: angle-bracketed URLs that mail
  providers read only as written, so they go on one line as they are (RFC 5322 allows
  998 characters; RFC 2369 asks for no whitespace inside the brackets). The policy would
  turn a long URL into encoded words (``=?utf-8?q?=3Chttps...?=``), which no provider
  reads as a one-click unsubscribe.
- A header value with a line break of any kind (any character ``str.splitlines`` breaks
  at, a trailing one included) or a header name that is not printable ASCII without a
  colon raises Flask-Mail's ``BadHeaderError``: nothing starts a new header line.
- Addresses: the envelope gets the bare mailbox (``anna@client.test``, never the display
  name), a non-ASCII domain in its IDNA form; a non-ASCII mailbox name (which needs
  SMTPUTF8) or anything that is not one mailbox raises ``ValueError``.

What makes it cheaper than Flask-Mail's own serialization (a third of its time for a
check-in mail) without changing what the policy writes: the header classes are made once
per header name (:class:`email.headerregistry.HeaderRegistry` makes a new class for every
header it parses); a header whose line needs no folding (printable ASCII, within the
policy's 78 characters) is written as it is instead of being refolded; the headers every
message repeats (``From``, ``MIME-Version``, each part's ``Content-Type`` and transfer
encoding) are parsed once; a text part that goes as it is gets its payload directly (what
``set_content`` stores for it), and multipart messages share one boundary, checked absent
from their parts.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from email import policy as email_policy
from email.header import Header
from email.headerregistry import Address, BaseHeader, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage, MIMEPart
from email.utils import formatdate, parseaddr
from functools import lru_cache
from typing import Any

from flask_mail import BadHeaderError, Message, force_text

__all__ = ["POLICY", "UnsendableAddress", "email_message", "envelope", "mailbox", "message_bytes"]

#: RFC 5322's limit on a line, without its CRLF.
MAX_LINE = 998
#: a header name as RFC 5322 has it: printable ASCII but the colon
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")
#: an alternative's subtype (Flask-Mail's ``alts`` keys, e.g. ``html``)
_SUBTYPE = re.compile(r"[a-z0-9][a-z0-9.+-]{0,62}\Z")
#: what ``str.splitlines`` breaks at: never in a header value
_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
#: what may not appear in a mailbox's local part or domain as written here
_MAILBOX_PART = re.compile(r"[^\s@<>()\[\],;:\"\\\x00-\x1f\x7f]+\Z")


class UnsendableAddress(ValueError):
    """An address that is not one mailbox SMTP can deliver to without SMTPUTF8 (its text is not kept)."""


class _AsItIs:
    """Every header class of :data:`POLICY`: a line that needs no folding is written as it is,
    and unstructured text that needs encoded words is encoded whole.

    The policy's own ``fold`` rebuilds and refolds the parsed header every time; for a
    printable ASCII line within ``max_line_length`` (that does not look like an encoded
    word) it writes the same ``Name: value``. Unstructured text (``Subject``, ``X-...``)
    that is not ASCII goes through :class:`email.header.Header`, which puts the spaces
    inside the encoded words: the policy's folder (Python 3.11) can fold right at a space
    between two encoded words, where a reader drops it (``к нам`` read as ``кнам``).
    """

    def fold(self, *, policy: Any) -> str:
        """``Name: value`` on one line when it fits, else encoded words or the policy's folding."""
        value = str(self)
        limit = getattr(self, "one_line_up_to", None) or policy.max_line_length
        name = self.name  # type: ignore[attr-defined]
        if (
            len(name) + len(value) + 2 <= limit
            and value.isascii()
            and value.isprintable()
            and "=?" not in value
            and not self.defects  # type: ignore[attr-defined]
        ):
            return f"{name}: {value}{policy.linesep}"
        if isinstance(self, UnstructuredHeader) and not policy.utf8 and (not value.isascii() or "=?" in value):
            encoded = Header(value, "utf-8", maxlinelen=policy.max_line_length, header_name=name)
            return f"{name}: {encoded.encode(linesep=policy.linesep)}{policy.linesep}"
        return super().fold(policy=policy)  # type: ignore[misc]


class _URLListHeader(UnstructuredHeader):
    """``List-Unsubscribe`` / ``List-Unsubscribe-Post``: written on one line up to 998 characters."""

    #: the longest line written as it is (for other headers: the policy's ``max_line_length``)
    one_line_up_to = MAX_LINE


class _Headers(HeaderRegistry):
    """The standard header registry, each class made once and writing short lines as they are."""

    def __init__(self) -> None:
        super().__init__()
        self.map_to_type("list-unsubscribe", _URLListHeader)
        self.map_to_type("list-unsubscribe-post", _URLListHeader)
        self._made: dict[str, type] = {}

    def __getitem__(self, name: str) -> type:
        key = name.lower()
        made = self._made.get(key)
        if made is None:
            base = super().__getitem__(name)
            made = type(base.__name__, (_AsItIs, base), {})
            if len(self._made) < 256:  # header names are few; a host's odd ones are not kept
                self._made[key] = made
        return made


#: :data:`email.policy.SMTP` (CRLF, 78-character folding, 8-bit bodies allowed) with the
#: header classes above.
POLICY = email_policy.SMTP.clone(header_factory=_Headers())
#: The same for a server without 8BITMIME: a non-ASCII body is quoted-printable or base64.
POLICY_7BIT = POLICY.clone(cte_type="7bit")


def mailbox(address: str | tuple[str, str] | Any) -> tuple[str, str]:
    """``(display name, addr_spec)`` of one Flask-Mail address (a string or a ``(name, address)`` pair).

    The domain is put in its IDNA (ASCII) form. Raises :class:`UnsendableAddress` for
    anything that is not one mailbox, and for a non-ASCII mailbox name (it would need
    SMTPUTF8) or domain that has no IDNA form.
    """
    if isinstance(address, tuple | list) and len(address) == 2:
        name, spec = force_text(address[0] or ""), force_text(address[1])
    else:
        text = force_text(address)
        if "\n" in text or "\r" in text:
            raise UnsendableAddress("an address with a line break")
        name, spec = parseaddr(text)
    local, at, domain = spec.rpartition("@")
    if not at or not _MAILBOX_PART.match(local) or not _MAILBOX_PART.match(domain):
        raise UnsendableAddress("not one mailbox")
    if not local.isascii():
        raise UnsendableAddress("a non-ASCII mailbox name needs SMTPUTF8")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise UnsendableAddress("a domain without an IDNA form") from None
    return " ".join(name.split()), f"{local}@{domain}"


#: a display name made of words only (letters, digits, spaces, ``'`` and ``-``): a phrase as it is
_PLAIN_NAME = re.compile(r"[^\W_](?:[\w '-]*[^\W_])?\Z")


def _header_address(address: Any) -> str:
    name, spec = mailbox(address)
    if not name:
        return spec
    if _PLAIN_NAME.match(name) and "_" not in name:
        return f"{name} <{spec}>"
    try:
        return str(Address(display_name=name, addr_spec=spec))
    except ValueError:  # what the policy's parser does not take as an addr-spec
        raise UnsendableAddress("not one mailbox") from None


def _unique(addresses: Iterable[Any]) -> list[str]:
    return list(dict.fromkeys(_header_address(address) for address in addresses))


def envelope(message: Message, envelope_from: str | tuple[str, str] | None = None) -> tuple[str, list[str]]:
    """SMTP's ``MAIL FROM`` and ``RCPT TO`` of ``message``: bare addresses (``To``, ``Cc`` and ``Bcc``)."""
    given = envelope_from or message.sender
    sender = _sender_mailbox(given) if isinstance(given, str) else mailbox(given)[1]
    recipients = [*(message.recipients or ()), *(message.cc or ()), *(message.bcc or ())]
    return sender, list(dict.fromkeys(mailbox(address)[1] for address in recipients))


@lru_cache(maxsize=16)
def _sender_mailbox(sender: str) -> str:
    return mailbox(sender)[1]


def _set(msg: EmailMessage, name: Any, value: Any) -> None:
    """``msg[name] = value``, the value parsed by the policy (once for a value that repeats)."""
    if not isinstance(name, str) or not _FIELD_NAME.match(name):
        raise BadHeaderError(name)
    if isinstance(value, BaseHeader):
        msg[name] = value
        return
    value = value if isinstance(value, str) else str(value)
    if _LINE_BREAK.search(value):  # a line break of any kind, a trailing one too
        raise BadHeaderError(name)
    if "=?" in value and issubclass(msg.policy.header_factory[name], UnstructuredHeader):
        # text that looks like an encoded word is the text itself: the policy would decode it
        value = Header(value, "utf-8").encode()
    msg[name] = _made(name, value)


@lru_cache(maxsize=256)
def _made(name: str, value: str) -> Any:
    """The policy's header object for ``value``, made once for a value that repeats (the
    ``From`` of every message, a part's ``Content-Type``, a ``Date`` within a second); the
    policy stores an object with a ``name`` as it is. Header objects do not change."""
    return POLICY.header_factory(name, value)


@lru_cache(maxsize=16)
def _from(sender: str) -> Any:
    """The ``From`` header of a sender (the same in every message of a run), made once."""
    return _made("From", _header_address(sender))


#: The boundary of every multipart message this process writes. A boundary must only be
#: absent from the message's own parts (checked, with a fresh one when it is not); short
#: enough for the ``Content-Type`` line to need no folding.
_BOUNDARY = "=_recovery_" + secrets.token_hex(8)


def _text_part(part: MIMEPart, text: str, subtype: str, charset: str, eight_bit: bool) -> bytes | None:
    """Fill ``part`` with ``text``; return its bytes on the wire when written as they are.

    ``7bit`` (ASCII) or ``8bit`` when every line fits in 998 octets and holds no NUL
    (``set_content``'s own result for such a text, with the headers made once); any other
    text is given to ``set_content`` to encode (quoted-printable or base64, as it picks).
    """
    data = text.encode(charset)
    lines = data.splitlines()
    plain = data.isascii()
    if (plain or eight_bit) and b"\x00" not in data and max(map(len, lines), default=0) <= MAX_LINE:
        body = b"\n".join(lines) + b"\n"
        part["Content-Type"] = _made("Content-Type", f'text/{subtype}; charset="{charset}"')
        part["Content-Transfer-Encoding"] = _made("Content-Transfer-Encoding", "7bit" if plain else "8bit")
        part.set_payload(body)  # bytes: kept as they are (the 8-bit generator writes them back)
        return body
    part.set_content(text, subtype=subtype, charset=charset)
    return None


def email_message(message: Message, *, eight_bit: bool = True) -> EmailMessage:
    """``message`` as the MIME message the extension sends (see the module's docstring).

    ``eight_bit``: the server announces 8BITMIME (else every non-ASCII part is encoded).
    Raises ``BadHeaderError`` for a header that would start a new line,
    :class:`UnsendableAddress` for an address that cannot be written, ``ValueError`` for
    an alternative whose key is not a MIME subtype.
    """
    policy = POLICY if eight_bit else POLICY_7BIT
    msg = EmailMessage(policy=policy)
    subject = force_text(message.subject) if message.subject else ""
    if subject:
        _set(msg, "Subject", subject)
    sender = message.sender
    _set(msg, "From", _from(sender) if isinstance(sender, str) else _header_address(sender))
    _set(msg, "To", ", ".join(_unique(message.recipients or ())))
    if message.cc:
        _set(msg, "Cc", ", ".join(_unique(message.cc)))
    if message.reply_to:
        _set(msg, "Reply-To", _header_address(message.reply_to))
    _set(msg, "Date", formatdate(message.date, localtime=True))
    _set(msg, "Message-ID", message.msgId)
    for name, value in (message.extra_headers or {}).items():
        _set(msg, name, value)
    msg["MIME-Version"] = _made("MIME-Version", "1.0")

    charset = message.charset or "utf-8"
    texts: list[tuple[str, str]] = []
    if message.body is not None or not message.alts:
        texts.append(("plain", force_text(message.body or "")))
    for subtype, content in (message.alts or {}).items():
        if not isinstance(subtype, str) or not _SUBTYPE.match(subtype):
            raise ValueError(f"not a text subtype: {subtype!r}")
        texts.append((subtype, force_text(content)))
    if len(texts) == 1:
        _text_part(msg, texts[0][1], texts[0][0], charset, eight_bit)
    else:
        parts = [MIMEPart(policy=policy) for _ in texts]
        written = [
            _text_part(part, text, subtype, charset, eight_bit)
            for part, (subtype, text) in zip(parts, texts, strict=True)
        ]
        boundary = _BOUNDARY.encode()
        # (an encoded part cannot hold it: quoted-printable encodes "=", base64 has no "_")
        if any(body is not None and boundary in body for body in written):
            msg.make_alternative(boundary=None)  # the generator draws one absent from the parts
        else:
            msg["Content-Type"] = _made("Content-Type", f'multipart/alternative; boundary="{_BOUNDARY}"')
        msg.set_payload(parts)
    for attachment in message.attachments or ():
        maintype, _, subtype = (attachment.content_type or "application/octet-stream").partition("/")
        data = attachment.data.encode(charset) if isinstance(attachment.data, str) else attachment.data
        msg.add_attachment(
            data,
            maintype=maintype,
            subtype=subtype or "octet-stream",
            filename=attachment.filename,
            disposition=attachment.disposition or "attachment",
            headers=[f"{name}: {value}" for name, value in (attachment.headers or {}).items()] or None,
        )
    return msg


def message_bytes(message: Message, *, eight_bit: bool = True) -> bytes:
    """The bytes :func:`email_message` writes for ``message`` (CRLF line ends)."""
    return email_message(message, eight_bit=eight_bit).as_bytes()
