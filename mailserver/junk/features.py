"""Features of a message for the junk classifier (issue #16 §2).

Each feature is a short string with a prefix saying where it came from:

* ``w:word`` words of the Subject and of the text parts (HTML reduced to its
  text with selectolax's HTML5 parser), lower-cased, 3 to 20 characters;
  ``b:word word`` pairs of consecutive words (2-grams);
* ``s:word`` Subject words again (a word in the Subject says more);
* ``u:domain`` the registered domain (Public Suffix List) of each URL;
* ``f:domain`` the From: domain (registered);
* ``a:spf=pass`` ... the verdicts of our Authentication-Results field (SPF,
  DKIM, DMARC, ARC), so sender authentication weighs in (issue #11);
* ``h:...`` header shape: no Date, no Message-ID, many recipients, all-caps
  Subject, HTML only;
* ``t:type/subtype`` attachment (non-text part) types.

Bounded work and output: at most ``MAX_TEXT`` octets of text are read and
``MAX_FEATURES`` features kept, whatever the message.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import Message

from selectolax.lexbor import LexborHTMLParser

from mailserver.dns.suffix import organizational_domain

#: Text read per message, octets (the start says enough; bounds the work).
MAX_TEXT = 100_000
#: Features kept per message.
MAX_FEATURES = 2000

_WORD = re.compile(r"[^\W\d_][\w'$€£-]{2,19}", re.UNICODE)
_URL = re.compile(r"(?i)\b(?:https?://|www\.)([a-z0-9.-]+\.[a-z]{2,})")
_AR_METHOD = re.compile(r"\b(spf|dkim|dmarc|arc)=(\w+)")


def _registered(domain: str) -> str:
    return organizational_domain(domain.strip(".").lower())


def html_text(html: str) -> str:
    """The visible text of ``html`` (script and style left out) and its link
    targets (``href``), for words and URLs.  selectolax's Lexbor parser (an
    HTML5 parser in C): the stdlib's ``html.parser`` was ~45 % of the
    features' time on the corpus, and scoring is on the path to the 250."""
    try:
        tree = LexborHTMLParser(html)
        for node in tree.css("script, style"):
            node.decompose()
        root = tree.body or tree.root
        text = root.text(separator=" ") if root is not None else ""
        links = [v for node in tree.css("[href]")
                 if (v := node.attributes.get("href"))]
    except Exception:  # lenient parser; anything else: no text from this part
        return ""
    return " ".join(" ".join([text, *links]).split())


def _payload(part: Message) -> str:
    try:
        raw = part.get_payload(decode=True)
    except Exception:
        return ""
    if not isinstance(raw, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return raw[:MAX_TEXT].decode(charset, errors="replace")
    except LookupError:
        return raw[:MAX_TEXT].decode("utf-8", errors="replace")


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text)]


def features(message: bytes) -> set[str]:
    """The features of ``message`` (bytes, as received) as strings (see the
    module docstring).  Never raises on malformed input."""
    msg = email.message_from_bytes(message[: MAX_TEXT * 2], policy=email.policy.compat32)
    out: set[str] = set()
    subject = str(msg.get("Subject", "") or "")
    subject_words = _words(subject)
    out.update("s:" + w for w in subject_words)
    texts: list[str] = [subject]
    html_only = True
    budget = MAX_TEXT
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        if ctype == "text/plain":
            html_only = False
        if ctype.startswith("text/") and budget > 0:
            text = _payload(part)[:budget]
            budget -= len(text)
            texts.append(html_text(text) if ctype == "text/html" else text)
        elif not ctype.startswith(("text/", "multipart/", "message/")):
            out.add("t:" + ctype)
    body = " ".join(texts)
    words = _words(body)
    out.update("w:" + w for w in words)
    out.update(f"b:{a} {b}" for a, b in zip(words, words[1:], strict=False))
    for host in _URL.findall(body):
        out.add("u:" + _registered(host))
    sender = str(msg.get("From", "") or "")
    at = sender.rfind("@")
    if at >= 0:
        domain = re.split(r"[>\s;,)]", sender[at + 1:], maxsplit=1)[0]
        if domain:
            out.add("f:" + _registered(domain))
    for field in msg.get_all("Authentication-Results", []) or []:
        for method, result in _AR_METHOD.findall(str(field).lower()):
            out.add(f"a:{method}={result}")
    if msg.get("Date") is None:
        out.add("h:no-date")
    if msg.get("Message-ID") is None:
        out.add("h:no-message-id")
    rcpts = sum(str(msg.get(h, "")).count("@") for h in ("To", "Cc"))
    if rcpts >= 10:
        out.add("h:many-recipients")
    letters = [c for c in subject if c.isalpha()]
    if len(letters) >= 8 and all(c.isupper() for c in letters):
        out.add("h:subject-caps")
    if html_only and len(texts) > 1:
        out.add("h:html-only")
    if len(out) > MAX_FEATURES:
        out = set(sorted(out)[:MAX_FEATURES])
    return out
