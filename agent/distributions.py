"""Installed distributions' versions, as importlib.metadata.version finds them, without importing it.

Why: the agent reads three versions at start (its own, the runtime's for the hardware profile and for
Health). importlib.metadata drags in zipfile, csv, email's parser and importlib.resources, about 0.9 MB
that would stay resident in the daemon for its whole life (bench/agent.py). The plain case, a `.dist-info`
or `.egg-info` directory in a directory on sys.path, is read here the way importlib.metadata reads it
(sys.path order, then directory listing order; names compared PEP 503-normalized; `Version:` from
METADATA, else PKG-INFO). Anything else (a zip or .egg on sys.path, another finder that lists
distributions, a header this reader is not sure about) is left to importlib.metadata itself, imported
then, so the answer is always the one it gives.
"""

from __future__ import annotations

import os
import re
import sys

_NORMALIZE = re.compile(r"[-_.]+")
_HEADER = re.compile(r"[^\s:]+:")


class _Unsure(Exception):
    """This reader cannot be sure it answers as importlib.metadata would: ask it."""


def _normalize(name: str) -> str:
    return _NORMALIZE.sub("-", name).lower().replace("-", "_")  # importlib.metadata.Prepared.normalize


def _other_finders() -> bool:
    """True when a meta path finder besides the standard PathFinder lists distributions."""
    from importlib.machinery import PathFinder

    return any(hasattr(f, "find_distributions") and f is not PathFinder for f in sys.meta_path)


def _read_version(info: str) -> str | None:
    """`Version:` of a .dist-info/.egg-info (directory or file), or _Unsure."""
    text = None
    for candidate in (os.path.join(info, "METADATA"), os.path.join(info, "PKG-INFO"), info):
        try:
            with open(candidate, encoding="utf-8") as f:
                text = f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            continue
        except (OSError, UnicodeDecodeError) as exc:  # importlib.metadata would raise: let it
            raise _Unsure from exc
        if text:
            break
    if not text:
        raise _Unsure
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.strip():
            break  # end of the header block
        if not _HEADER.match(line):
            raise _Unsure  # a continuation or a malformed line: email's parser has rules for those
        key, _, value = line.partition(":")
        if key.lower() == "version":
            if i + 1 < len(lines) and lines[i + 1][:1] in (" ", "\t"):
                raise _Unsure
            return value.lstrip(" \t")
    return None


def _version(name: str) -> str | None:
    if _other_finders():
        raise _Unsure
    wanted = _normalize(name)
    for entry in sys.path:
        root = entry or "."
        try:
            children = os.listdir(root)
        except NotADirectoryError as exc:  # a zip on sys.path
            raise _Unsure from exc
        except OSError:
            continue  # missing, as importlib.metadata skips it (a path hook entry, python3x.zip)
        if os.path.basename(root).lower().endswith(".egg"):
            raise _Unsure
        for child in children:
            low = child.lower()
            if low.endswith((".dist-info", ".egg-info")) and _normalize(low.rpartition(".")[0].partition("-")[0]) == wanted:
                return _read_version(os.path.join(root, child))
    raise LookupError(name)


def version(name: str) -> str | None:
    """The installed version of distribution `name`, None when none is installed (what
    importlib.metadata.version returns, or PackageNotFoundError)."""
    try:
        return _version(name)
    except LookupError:
        return None
    except _Unsure:
        pass
    from importlib import metadata  # the unusual layouts only; see the module's docstring

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None
