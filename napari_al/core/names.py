"""Names that line-based files and one-line messages cannot hold: control characters.

A file name may hold any character but ``/`` and NUL, a line break included. VOC's
``ImageSets/Main/*.txt`` and YOLO's image lists hold one name a line, VOC's XML cannot hold
most control characters at all, and a warning or a row of ``napari-al info --images`` is one
line: a name holding a line break split them in two. So an import leaves such an image out
(named, with the fix: rename it), the store refuses such a class name, the VOC and YOLO
writers refuse to reference such a name and name their own files without it, and every
line-based output shows such a name escaped (:func:`shown`, :func:`escaped`).

A control character here is any of Unicode's categories ``Cc`` (C0 and C1 controls, DEL; a
tab among them), ``Zl`` and ``Zp`` (the line and paragraph separators, which Python's
``str.splitlines`` splits on).
"""

from __future__ import annotations

import unicodedata

#: Unicode categories of the characters that a name held in a line of text cannot hold.
CONTROL_CATEGORIES = ("Cc", "Zl", "Zp")

#: How a person reads the commonest control characters.
_WORDS = {"\n": "a line break", "\r": "a carriage return", "\t": "a tab"}


def is_control(char: str) -> bool:
    """Whether the one character ``char`` is a control character (see the module)."""
    return unicodedata.category(char) in CONTROL_CATEGORIES


def control_characters(text: str) -> list[str]:
    """The control characters of ``text``, each once, in order of first appearance."""
    return list(dict.fromkeys(c for c in text if is_control(c)))


def escaped(text: str) -> str:
    """``text`` with each control character written as Python writes it in a string literal
    (``\\n``, ``\\t``, ``\\x1b``, ``\\u2028``), everything else as it is: one line, for a
    message that holds a name (an error, a warning)."""
    if not control_characters(text):
        return text
    return "".join(repr(c)[1:-1] if is_control(c) else c for c in text)


def edge_spaces(name: str) -> bool:
    """Whether a part of the path ``name`` (split at ``/`` and ``\\``) begins or ends with
    whitespace (``' b.png'``, ``'scans /a.png'``, ``'a.png '``): unquoted in a line of output,
    the space reads as the line's own and a copied path misses it."""
    return any(part != part.strip() for part in name.replace("\\", "/").split("/"))


def shown(name: str) -> str:
    """A name for a line of output: as it is, or, when it holds a control character or a part
    of it begins or ends with whitespace (:func:`edge_spaces`), quoted and escaped as Python's
    ``repr`` writes it (``'a\\nb.png'``, ``'/data/ b.png'``), so that the name cannot be
    mistaken for one holding a backslash, nor lose its space when copied."""
    return repr(name) if control_characters(name) or edge_spaces(name) else name


def control_problem(name: str) -> str | None:
    """``None`` when ``name`` holds no control character, else what it holds in words:
    ``"a control character (a line break, \\n)"``, ``"a control character (\\x01)"``,
    ``"control characters (\\x01, \\t)"``."""
    chars = control_characters(name)
    if not chars:
        return None
    codes = ", ".join(repr(c)[1:-1] for c in chars)
    if len(chars) > 1:
        return f"control characters ({codes})"
    word = _WORDS.get(chars[0])
    return f"a control character ({word}, {codes})" if word else f"a control character ({codes})"
