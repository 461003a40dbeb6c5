"""Keep secrets out of manifests, logs and dataset cards.

Three nets, applied to everything sagecorpus writes about a run:
1. keys that name a secret (``api_key``, ``token``, ``password``, ``authorization`` ...) have their
   values replaced, whatever the value is;
2. values shaped like a credential (``Bearer ...``, ``sk-...``, ``hf_...``, AWS key ids) are replaced;
3. the value of any environment variable whose name looks secret (``HF_TOKEN``, ``OPENAI_API_KEY``,
   ``AWS_SECRET_ACCESS_KEY`` ...) is replaced wherever it appears inside a string.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

REDACTED = "<redacted>"

SECRET_WORDS = {"token", "secret", "password", "passwd", "authorization", "authorisation", "auth", "credential",
                "credentials", "cookie", "apikey", "bearer"}
SECRET_PAIRS = {("api", "key"), ("access", "key"), ("private", "key"), ("session", "key"), ("secret", "key")}
SECRET_VALUE = re.compile(
    r"(Bearer\s+[A-Za-z0-9._~+/=-]{8,}"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|\bhf_[A-Za-z0-9]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\b(AKIA|ASIA)[A-Z0-9]{16}\b"
    r"|\bxox[abprs]-[A-Za-z0-9-]{10,})"
)
SECRET_ENV = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIAL|AUTH)", re.IGNORECASE)
MIN_ENV_SECRET_LEN = 6


def secret_env_values() -> list[str]:
    """Values of environment variables whose names look like they hold secrets (longest first)."""
    values = {v for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v) >= MIN_ENV_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


def is_secret_key(key: str) -> bool:
    """Whether a config key names a secret, by its last word or a word pair (``hf_token``, ``apiKey``,
    ``aws_secret_access_key``), not by substrings (``max_new_tokens``, ``min_alpha_token_fraction``)."""
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", str(key))]
    return bool(words) and (words[-1] in SECRET_WORDS or any(pair in SECRET_PAIRS for pair in zip(words, words[1:])))


def redact_text(text: str) -> str:
    """Replace credential-shaped substrings and secret environment values in ``text``."""
    for value in secret_env_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return SECRET_VALUE.sub(REDACTED, text)


def redact(obj: Any) -> Any:
    """A copy of a JSON-like object with secrets replaced (by key name and by value)."""
    if isinstance(obj, dict):
        return {
            k: (REDACTED if is_secret_key(k) and v not in (None, "", [], {}) else redact(v))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


class RedactingFilter(logging.Filter):
    """A logging filter that redacts every record's formatted message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_text(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def install_log_redaction() -> None:
    """Redact secrets from every log record, ours and our dependencies' (loguru included)."""
    root = logging.getLogger()
    if not any(isinstance(f, RedactingFilter) for f in root.filters):
        root.addFilter(RedactingFilter())
        for handler in root.handlers:
            handler.addFilter(RedactingFilter())
    try:  # datatrove logs through loguru
        from loguru import logger

        logger.configure(patcher=lambda record: record.update(message=redact_text(record["message"])))
    except ImportError:
        pass
