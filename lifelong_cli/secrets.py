"""Masking secrets in anything llctl prints, stores or logs: the one function every output path uses.

A URL's password is found by taking the URL apart (``scheme://userinfo@host…``), not by a regex per
module: the userinfo runs to the *last* ``@`` of the URL (a password with an unencoded ``@`` is still
a password), an empty user (``://:PW@host``) still has a password, and password-like query
parameters (``?password=PW``, libpq's ``password=PW``) are masked wherever they appear. Secret values
that are not in a URL (the serving admin token) are masked by value."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import unquote

MASK = "***"

# a URL inside free text: a scheme, ://, then anything up to white space or a quoting character
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s\"'<>`]*")
# password-like parameters: in a query string (?password=PW&…) or a libpq DSN (password=PW host=…)
# (a value's trailing . , : ) ] } is taken for the sentence's punctuation, not the value's)
_PARAM = re.compile(r"(?i)(?<![A-Za-z0-9_])((?:password|passwd|pwd|secret|token|access_token|api_key|apikey)=)"
                    r"(?:'(?:[^'\\]|\\.)*'|(?:[^&\s;\"'<>`]*[^&\s;\"'<>`.,:)\]}])?)")
_SECRET_VALUE_MIN = 6  # shorter values are not masked by value (they would mask ordinary words)


def url_password(url: str) -> str | None:
    """The password in a URL (``scheme://user:PW@host``, ``://:PW@host``, ``?password=PW``), else None."""
    userinfo = _userinfo(url)
    if userinfo is not None and ":" in userinfo:
        return userinfo.split(":", 1)[1]
    m = _PARAM.search(url.split("?", 1)[1]) if "?" in url else None
    if m and m.group(1).lower().startswith(("password", "passwd", "pwd")):
        return m.group(0)[len(m.group(1)):].strip("'")
    return None


def _split(url: str) -> tuple[str, str | None, str] | None:
    """``(scheme, userinfo, the rest)`` of a URL (userinfo None when there is none), or None when
    ``url`` has no ``://``. The authority ends at the first ``/``, ``?`` or ``#``, and its userinfo
    at its *last* ``@`` (an unencoded ``@`` in a password); a password with an unencoded ``/``, ``?``
    or ``#`` ends the authority early, so ``user:pa/ss@host`` (a colon not followed by a port) takes
    the userinfo to the next ``@``."""
    if "://" not in url:
        return None
    scheme, rest = url.split("://", 1)
    end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    head = rest[:end]
    if "@" in head:
        userinfo, after = head.rsplit("@", 1)
        return scheme, userinfo, after + rest[end:]
    if ":" in head and "@" in rest[end:]:
        port = head.rsplit(":", 1)[1]
        if not port.isdigit() and not (head.startswith("[") and "]" in head):
            at = rest.index("@", end)
            return scheme, rest[:at], rest[at + 1:]
    return scheme, None, rest


def _userinfo(url: str) -> str | None:
    parts = _split(url)
    return parts[1] if parts else None


def unencoded_at(url: str) -> bool:
    """Whether a URL's userinfo holds an ``@`` of its own (a password such as ``p@ss`` not written
    ``p%40ss``): drivers split it at the first ``@`` and then echo the rest as a host name."""
    userinfo = _userinfo(url)
    return userinfo is not None and "@" in userinfo


def mask_url(url: str) -> str:
    """One URL with its password (and password-like query parameters) replaced by ``***``."""
    parts = _split(url)
    if parts and parts[1] is not None:
        scheme, userinfo, rest = parts
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":" + MASK
        url = f"{scheme}://{userinfo}@{rest}"
    return _PARAM.sub(lambda m: m.group(1) + MASK, url)


def mask(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with every URL password, password-like parameter and each of ``secrets`` (by value,
    and those of the environment: ``secret_values()``) replaced by ``***``."""
    if not isinstance(text, str) or not text:
        return text
    for value in sorted({*secrets, *secret_values()}, key=len, reverse=True):
        if value and len(value) >= _SECRET_VALUE_MIN and value in text:
            text = text.replace(value, MASK)
    if "://" in text:
        text = _URL.sub(_mask_match, text)
    if "=" in text:
        text = _PARAM.sub(lambda m: m.group(1) + MASK, text)
    return text


def _mask_match(m: re.Match[str]) -> str:
    """A URL found in free text, masked; trailing punctuation (``url: message``) is left outside it."""
    url = m.group(0)
    core = url.rstrip(".,:;)]}")
    return mask_url(core) + url[len(core):]


def mask_obj(obj: Any, secrets: Iterable[str] = ()) -> Any:
    """``mask`` applied to every string (keys too) of a JSON-like document."""
    secrets = tuple(secrets)
    if isinstance(obj, str):
        return mask(obj, secrets)
    if isinstance(obj, Mapping):
        return {mask_obj(k, secrets) if isinstance(k, str) else k: mask_obj(v, secrets) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [mask_obj(v, secrets) for v in obj]
    return obj


# environment variables whose values are secrets wherever they show up
SECRET_ENV = ("LLCTL_ADMIN_TOKEN", "PGPASSWORD", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN",
              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
_extra_env: set[str] = set()


def register_secret_env(name: str) -> None:
    """Treat the value of environment variable ``name`` as a secret too (``serving.admin_token_env``)."""
    _extra_env.add(name)


def secret_values(env: Mapping[str, str] | None = None) -> set[str]:
    """The secret values in the environment: the variables above, and the password of any store URL
    given there (``LLCTL_STORE__URL``)."""
    env = os.environ if env is None else env
    out = {env[n] for n in (*SECRET_ENV, *_extra_env) if env.get(n)}
    for n, v in env.items():
        if n.startswith("LLCTL_") and "://" in v:
            pw = url_password(v)
            if pw:
                out |= {pw, unquote(pw)}
    return out


class MaskingStream:
    """A text stream that masks what is written to it (``mask``) before passing it on: stdout and
    stderr while a command runs, so no output path (rich tables, JSON, errors, tracebacks under
    --debug, warnings) can print a secret."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        self._inner.write(mask(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
