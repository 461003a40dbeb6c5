"""Keep secrets out of manifests, logs and dataset cards.

Three nets, applied to everything sagecorpus writes about a run:
1. keys that name a secret (``api_key``, ``token``, ``password``, ``authorization`` ...) have their
   values replaced, whatever the value is, and so has every value of a ``storage_options`` dict
   (fsspec credentials: s3fs ``key``/``secret``, gcsfs ``token``, ...; the keys stay);
2. values shaped like a credential (``Bearer ...``, ``sk-...``, ``hf_...``, AWS key ids, the
   ``user:password@`` part of a URL) are replaced;
3. the value of any environment variable whose name looks secret (``HF_TOKEN``, ``OPENAI_API_KEY``,
   ``AWS_SECRET_ACCESS_KEY`` ...) is replaced wherever it appears inside a string.

:func:`redact_argv` applies them to a command line (the value after ``--password``, ``--storage-options``
and the like, JSON values), and :func:`describe_error` turns an exception into a message that never
echoes the offending input.
"""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

from pydantic import ValidationError

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
URL_CREDENTIALS = re.compile(r"\b([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@'\"]+@")
"""The ``user:password@`` (or ``KEY:SECRET@``, ``token@``) part of a URL."""
OPTIONS_KEY = "storage_options"
"""A dict under this key holds fsspec credentials: every value of it is redacted, the keys kept."""
SECRET_ENV = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_KEY|CREDENTIAL|AUTH)", re.IGNORECASE)
MIN_ENV_SECRET_LEN = 6


def secret_env_values() -> list[str]:
    """Values of environment variables whose names look like they hold secrets (longest first)."""
    values = {v for k, v in os.environ.items() if SECRET_ENV.search(k) and len(v) >= MIN_ENV_SECRET_LEN}
    return sorted(values, key=len, reverse=True)


VOCABULARY_TOKENS = {"eos", "bos", "pad", "unk", "sep", "cls", "mask", "special", "separator", "stop"}
"""Words that make ``<word>_token`` a tokenizer's token (``eos_token``), not a credential."""


def is_secret_key(key: str) -> bool:
    """Whether a config key names a secret, by its last word or a word pair (``hf_token``, ``apiKey``,
    ``aws_secret_access_key``), not by substrings (``max_new_tokens``, ``min_alpha_token_fraction``)
    nor a tokenizer's tokens (``eos_token``, ``pad_token``)."""
    words = [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", str(key))]
    if len(words) >= 2 and words[-1] == "token" and words[-2] in VOCABULARY_TOKENS:
        return False
    return bool(words) and (words[-1] in SECRET_WORDS or any(pair in SECRET_PAIRS for pair in zip(words, words[1:])))


def redact_text(text: str) -> str:
    """Replace credential-shaped substrings (URL credentials included) and secret environment values in ``text``."""
    for value in secret_env_values():
        if value in text:
            text = text.replace(value, REDACTED)
    text = URL_CREDENTIALS.sub(lambda m: f"{m.group(1)}{REDACTED}@", text)
    return SECRET_VALUE.sub(REDACTED, text)


def redact(obj: Any) -> Any:
    """A copy of a JSON-like object with secrets replaced (by key name and by value); a dict under a
    ``storage_options`` key keeps its keys and loses every value."""
    if isinstance(obj, dict):
        return {
            k: (REDACTED if is_secret_key(k) and v not in (None, "", [], {})
                else {o: REDACTED for o in v} if k == OPTIONS_KEY and isinstance(v, dict) else redact(v))
            for k, v in obj.items()
        }
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def _secret_option(arg: str) -> bool:
    """Whether a command-line option (``--hf-token``, ``--storage-options``) takes a secret value."""
    name = arg.lstrip("-").replace("-", "_")
    return arg.startswith("-") and (is_secret_key(name) or name == OPTIONS_KEY)


def _redact_arg_value(option: str, value: str) -> str:
    if option.lstrip("-").replace("-", "_") == OPTIONS_KEY:
        try:
            return json.dumps(redact({OPTIONS_KEY: json.loads(value)})[OPTIONS_KEY], sort_keys=True)
        except ValueError:
            return REDACTED
    return REDACTED


def redact_argv(argv: list[str]) -> list[str]:
    """A command line fit to record: the value after an option whose name is secret-like or is
    ``--storage-options`` (also in ``--opt=value`` form) is redacted (storage options keep their keys),
    a JSON object or list given as a value is redacted as data, and every argument as text."""
    out: list[str] = []
    secret_next = None
    for arg in argv:
        if secret_next is not None:
            out.append(_redact_arg_value(secret_next, arg))
            secret_next = None
            continue
        option, eq, value = arg.partition("=")
        if _secret_option(option):
            if eq:
                out.append(f"{option}={_redact_arg_value(option, value)}")
            else:
                out.append(arg)
                secret_next = arg
            continue
        if arg.lstrip()[:1] in ("{", "["):
            try:
                out.append(json.dumps(redact(json.loads(arg)), sort_keys=True))
                continue
            except ValueError:
                pass
        out.append(redact_text(arg))
    return out


def describe_error(e: BaseException) -> str:
    """What to tell the user about an error, never echoing a secret: a pydantic validation error is
    one line per problem (where and what, without the input value); anything else is its text redacted."""
    if isinstance(e, ValidationError):
        problems = [
            f"  {'.'.join(str(part) for part in err['loc']) or '(top level)'}: {redact_text(err['msg'])}"
            for err in e.errors(include_url=False, include_input=False, include_context=False)
        ]
        return f"invalid {e.title} ({len(problems)} problem{'s' * (len(problems) != 1)}):\n" + "\n".join(problems)
    return redact_text(str(e))


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
