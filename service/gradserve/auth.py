"""API keys and their scopes, with no HTTP in it.

A caller presents a key (over HTTP: ``Authorization: Bearer <key>``); the service knows only the
SHA-256 digest of each key, so a leaked configuration does not leak the keys. Each key has a name
(for logs) and scopes:

    read      model metadata, weights, versions, metrics
    compute   evaluate, forward_derivative, gradient
    write     store weights, restore a version

A key entry is ``<name>:<sha256 hex of the key>:<scope>[,<scope>...]``. Entries are given in
``GRADSERVE_API_KEYS`` (separated by ``;`` or new lines) and/or in the file
``GRADSERVE_API_KEYS_FILE`` (one per line, ``#`` starts a comment). ``gradserve key`` makes a key
and prints its entry. With no entry at all the service is open, and then only on loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from .errors import Forbidden, Unauthorized

__all__ = ["SCOPES", "ApiKey", "KeyRing", "KeyConfigError", "new_key", "digest",
           "exposure_problem", "is_loopback", "parse_entry"]

SCOPES = ("read", "compute", "write")
_HEX = re.compile(r"^[0-9a-f]{64}$")
_KEY_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


class KeyConfigError(ValueError):
    """A key entry is malformed; the message names where and what."""


def digest(key: str) -> str:
    """The SHA-256 hex digest of a key, as stored in a key entry."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    """One configured key: its name, the digest of its secret, and what it may do."""

    name: str
    sha256: str
    scopes: frozenset[str]

    def entry(self) -> str:
        return f"{self.name}:{self.sha256}:{','.join(s for s in SCOPES if s in self.scopes)}"


def parse_entry(text: str, where: str) -> ApiKey:
    """Parse ``name:sha256:scope,scope``; KeyConfigError (naming ``where``) if malformed."""
    parts = text.strip().split(":")
    if len(parts) != 3:
        raise KeyConfigError(f"{where}: expected 'name:sha256-hex:scope[,scope]', got "
                             f"{len(parts)} field(s)")
    name, sha, scopes_text = (p.strip() for p in parts)
    if not _KEY_NAME.match(name):
        raise KeyConfigError(f"{where}: key name {name!r} must be 1-64 letters, digits or _.@-")
    sha = sha.lower()
    if not _HEX.match(sha):
        # A raw key pasted where its digest belongs would otherwise sit in the configuration.
        raise KeyConfigError(f"{where}: key {name!r}: the second field must be the SHA-256 hex "
                             "digest of the key (64 hex digits), not the key itself; "
                             "'gradserve key' prints a ready entry")
    scopes = frozenset(s.strip() for s in scopes_text.split(",") if s.strip())
    unknown = sorted(scopes - set(SCOPES))
    if not scopes or unknown:
        raise KeyConfigError(f"{where}: key {name!r}: scopes must be among {', '.join(SCOPES)}; "
                             f"got {scopes_text!r}")
    return ApiKey(name, sha, scopes)


class KeyRing:
    """The configured keys. Empty: the service is open (every scope granted to everyone)."""

    def __init__(self, keys: list[ApiKey] | tuple[ApiKey, ...] = ()):
        names = [k.name for k in keys]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise KeyConfigError(f"key name {duplicates[0]!r} is configured twice")
        self.keys = tuple(keys)

    @classmethod
    def parse(cls, inline: str | None = None, file: Path | None = None) -> "KeyRing":
        """Keys from an inline list (``;`` or new lines between entries) and a file."""
        keys = []
        for i, entry in enumerate(re.split(r"[;\n]", inline or "")):
            if entry.strip():
                keys.append(parse_entry(entry, f"GRADSERVE_API_KEYS entry {i + 1}"))
        if file is not None:
            try:
                lines = Path(file).read_text(encoding="utf-8").splitlines()
            except OSError as exc:
                raise KeyConfigError(f"GRADSERVE_API_KEYS_FILE {file}: cannot be read "
                                     f"({exc.strerror or exc})") from None
            for number, line in enumerate(lines, 1):
                line = line.split("#", 1)[0]
                if line.strip():
                    keys.append(parse_entry(line, f"{file} line {number}"))
        return cls(keys)

    @classmethod
    def from_settings(cls, settings) -> "KeyRing":
        return cls.parse(settings.api_keys, settings.api_keys_file)

    @property
    def open(self) -> bool:
        """True when no key is configured: every request is let through."""
        return not self.keys

    def identify(self, key: str | None) -> ApiKey | None:
        """The configured key matching ``key``, or None.

        Every stored digest is compared, in constant time, whatever matches: the time taken
        says nothing about which digest, or how much of one, matched.
        """
        if not key:
            return None
        presented = digest(key).encode()
        found = None
        for candidate in self.keys:
            if hmac.compare_digest(presented, candidate.sha256.encode()):
                found = candidate
        return found

    def authorize(self, key: str | None, scope: str) -> ApiKey | None:
        """Check that ``key`` grants ``scope``: Unauthorized (no or unknown key), Forbidden
        (known key, scope missing). Returns the key (None when the service is open)."""
        if scope not in SCOPES:
            raise ValueError(f"unknown scope {scope!r}")
        if self.open:
            return None
        found = self.identify(key)
        if found is None:
            raise Unauthorized("a valid API key is required: send 'Authorization: Bearer <key>'"
                               if not key else "the API key is not valid")
        if scope not in found.scopes:
            raise Forbidden(f"the API key {found.name!r} lacks the {scope!r} scope "
                            f"(it has: {', '.join(sorted(found.scopes))})")
        return found


def new_key(name: str, scopes: list[str] | tuple[str, ...]) -> tuple[str, ApiKey]:
    """A fresh random key (256 bits, URL-safe) and its entry; the key is shown once, only its
    digest is configured."""
    key = "gs_" + secrets.token_urlsafe(32)
    entry = parse_entry(f"{name}:{digest(key)}:{','.join(scopes)}", "the new key")
    return key, entry


def is_loopback(host: str) -> bool:
    """True for an address only this machine can reach (127.0.0.0/8, ::1, 'localhost')."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def exposure_problem(host: str, keys: KeyRing, allow_unauthenticated: bool) -> str | None:
    """Why serving on ``host`` with ``keys`` is refused, or None when it is fine."""
    if not keys.open or is_loopback(host) or allow_unauthenticated:
        return None
    return (f"refusing to serve on {host} without API keys: anyone who can reach that address "
            "could rewrite the models. Configure keys (GRADSERVE_API_KEYS or "
            "GRADSERVE_API_KEYS_FILE; 'gradserve key' makes one), bind 127.0.0.1, or pass "
            "--allow-unauthenticated (GRADSERVE_ALLOW_UNAUTHENTICATED=1) if another layer "
            "guards the service.")
