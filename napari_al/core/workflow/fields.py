"""How a settings dataclass declares its fields, checks them and becomes command-line flags.

A field is declared with :func:`option` (default, help with the unit, and its checks);
:func:`check_fields` validates an instance (each settings class calls it in
``__post_init__``); :func:`add_arguments` adds one ``--flag`` per field to an argparse parser
and :func:`from_args` builds the instance back, a bad value named by its flag.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from dataclasses import field
from typing import Any, TypeVar

from napari_al.core.workflow.errors import SettingsError, wrong_type


def option(default: Any, help: str, **extra: Any) -> Any:
    """A settings field: its default, help (with the unit) and checks, in ``metadata``:
    ``choices``, ``minimum``/``maximum`` (inclusive), ``above`` (an exclusive minimum),
    ``pattern`` (a full-match regex, with ``expected`` saying in words what matches),
    ``check`` (a callable raising ValueError), ``flag`` (the command-line flag, default
    ``--field-name``), ``metavar`` (the value's name in a flag's help); ``None`` values are
    never checked."""
    return field(default=default, metadata={"help": help, **extra})


def check_fields(settings: Any) -> None:
    """Validate every field of a settings instance against its metadata; raise
    :class:`SettingsError` naming the first bad field, its value and what it must be."""
    import math
    import re

    for f in dataclasses.fields(settings):
        value, m = getattr(settings, f.name), f.metadata
        if value is None:
            continue
        takes = _takes(str(f.type), value)
        if takes is not None:  # "5" < 1 raised a bare TypeError naming no field
            raise wrong_type(f.name, takes, value)
        if isinstance(value, bool):
            continue
        problem = None
        if isinstance(value, float) and not math.isfinite(value):
            # NaN passes every bound check (all comparisons are False): --lr nan trained a
            # model of NaN weights and saved it as the one in use.
            problem = f"must be a finite number; got {value}"
        elif "choices" in m and value not in m["choices"]:
            problem = f"must be one of {', '.join(map(str, m['choices']))}; got {value!r}"
        elif "pattern" in m and not re.fullmatch(m["pattern"], str(value)):
            problem = f"{value!r} is not valid; expected {m.get('expected', m['help'])}"
        elif "above" in m and value <= m["above"]:
            problem = f"must be more than {m['above']}; got {value}"
        elif "minimum" in m and value < m["minimum"]:
            problem = f"must be at least {m['minimum']}; got {value}"
        elif "maximum" in m and value > m["maximum"]:
            problem = f"must be at most {m['maximum']}; got {value}"
        elif "check" in m:
            try:
                m["check"](value)
            except ValueError as exc:
                raise SettingsError(str(exc), f.name) from None
        if problem is not None:
            raise SettingsError(f"{f.name} {problem}", f.name)


#: What a field of each annotated type takes, in words.
_TAKES = {"int": "a whole number", "float": "a number", "str": "text", "bool": "True or False"}


def _takes(annotation: str, value: Any) -> str | None:
    """None when ``value`` fits a field annotated ``annotation`` (``"int | None"``: an int;
    None is never checked), else what the field takes, in words. numpy numbers fit; a bool is
    no number, a float no whole number."""
    import numbers

    import numpy as np

    kinds = [k.strip() for k in annotation.split("|") if k.strip() != "None"]
    kind = kinds[0] if len(kinds) == 1 else None
    is_bool = isinstance(value, bool | np.bool_)
    fits = {
        "int": isinstance(value, numbers.Integral) and not is_bool,
        "float": isinstance(value, numbers.Real) and not is_bool,
        "str": isinstance(value, str),
        "bool": is_bool,
    }
    if kind not in fits or fits[kind]:
        return None  # an annotation this check does not know is not checked
    return _TAKES[kind]


S = TypeVar("S")


def _flag(f: dataclasses.Field) -> str:
    return str(f.metadata.get("flag", "--" + f.name.replace("_", "-")))


def _parse_type(f: dataclasses.Field) -> type:
    text = str(f.type)
    for name, typ in (("int", int), ("float", float), ("str", str)):
        if text.startswith(name):
            return typ
    raise TypeError(f"no command-line type for field {f.name!r} ({text})")


def add_arguments(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    only: Iterable[str] | None = None,
) -> None:
    """Add one ``--flag`` per field of settings class ``cls`` (all, or those in ``only``).

    Defaults are left to :func:`from_args` (argparse's default is ``None``), so the dataclass
    stays the single source of each default; the help shows it.
    """
    wanted = None if only is None else set(only)
    for f in dataclasses.fields(cls):
        if wanted is not None and f.name not in wanted:
            continue
        help_text = str(f.metadata.get("help", ""))
        if "default" not in help_text:  # a help that explains its default says it already
            help_text += f" (default: {f.default})"
        if str(f.type) == "bool":
            parser.add_argument(_flag(f), dest=f.name, action="store_true", help=help_text)
            continue
        kwargs: dict[str, Any] = {"dest": f.name, "type": _parse_type(f), "help": help_text}
        if "choices" in f.metadata:
            kwargs["choices"] = f.metadata["choices"]
        if "metavar" in f.metadata:
            kwargs["metavar"] = f.metadata["metavar"]
        parser.add_argument(_flag(f), **kwargs)


def from_args(cls: type[S], args: argparse.Namespace, **overrides: Any) -> S:
    """An instance of settings class ``cls`` from parsed arguments: fields the command line
    did not set (absent or ``None``, or a ``False`` switch) keep the dataclass default.
    Raises :class:`SettingsError` naming the bad value's flag (``--batch-size must be at
    least 1``), not its field."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        value = getattr(args, f.name, None)
        if value is None or (str(f.type) == "bool" and value is False):
            continue
        values[f.name] = value
    values.update(overrides)
    try:
        return cls(**values)
    except SettingsError as exc:
        raise flag_named(exc, cls) from None


def flags_given(
    cls: type, args: argparse.Namespace, *, only: Iterable[str] | None = None
) -> list[str]:
    """The ``--flags`` of settings class ``cls`` (all fields, or those named in ``only``) that
    the command line set (what :func:`from_args` would take from ``args``), in field order."""
    wanted = None if only is None else set(only)
    return [
        _flag(f)
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if (wanted is None or f.name in wanted)
        and getattr(args, f.name, None) is not None
        and not (str(f.type) == "bool" and getattr(args, f.name) is False)
    ]


def flag_named(exc: SettingsError, cls: type) -> SettingsError:
    """``exc`` (about a field of settings class ``cls``) as the command line says it: the
    field's flag (``--batch-size``) where the message names the field (``batch_size``)."""
    flags = {f.name: _flag(f) for f in dataclasses.fields(cls)}
    return exc.named(flags[exc.field]) if exc.field in flags else exc
