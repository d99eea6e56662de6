"""Configuration: TOML plus ``TRADEWIND_*`` environment overrides, into frozen attrs classes.

``load_config(AppConfig, "tradewind.toml")`` reads the file, lays the environment on top
(``TRADEWIND_RISK__MAX_POSITION=5`` sets ``risk.max_position``), structures the result
into the attrs classes and runs their validators. Every problem found is reported at
once in one ``ConfigError``, one line each, naming the setting's path and its
environment variable::

    risk.max_position (TRADEWIND_RISK__MAX_POSITION): must be >= 0, got -5
    store.url (TRADEWIND_STORE__URL): required, missing

``Secret`` holds a credential that never prints; ``dump_config`` gives the effective
configuration for display, secrets masked.
"""

# Design notes
# ------------
# * TOML floats never pass through float: the text is parsed with
#   `parse_float=decimal.Decimal`, so `tick_size = 0.01` arrives as Decimal("0.01"), the
#   exact literal. A `float` field (a timeout) takes the Decimal converted.
# * Where a value came from decides how it may be read. TOML values are typed: a TOML
#   string is not an integer, and `max_order_rate = "5"` is a mistake worth reporting.
#   Environment values are always text, so they are marked (`_EnvText`) when laid onto
#   the document and the scalar hooks parse them ("5" -> 5, "true" -> True). Decimal
#   fields accept TOML strings too: quoting a price is a common way to keep it exact. A
#   setting without a declared type (a strategy's ``params``) reads the text as the TOML
#   value it spells ("false" -> False, "0.25" -> Decimal), else as the text: left a
#   string, ``allow_short = "false"`` would be true.
# * All problems at once. cattrs' generated attrs hooks (even with detailed validation)
#   report only the first failing validator of a class, as a class-level error without
#   the field's name, because attrs runs validators inside `__init__`. So attrs classes
#   get our own structure hook: it structures each field through the converter, runs that
#   field's validator on its own, collects every failure, and only then constructs the
#   instance (which runs the validators again and any class-level invariant). Failures
#   are raised in cattrs' own shape -- `ClassValidationError` / `IterableValidationError`
#   with attribute and index notes -- so the one walker in `_problems` reads them all,
#   including those raised by cattrs' built-in hooks (e.g. for `X | None`).
# * Unknown keys are problems, never ignored: a misspelt limit silently falling back to
#   its default is how a risk limit goes missing. Environment variables are held to the
#   same rule when they name a nested setting (`TRADEWIND_RISK__MAX_POSITON`); a
#   single-segment variable that names no top-level setting is ignored, because other
#   tools share the prefix (`TRADEWIND_TEST_DSN` is the storage tests' DSN).
# * Sequence and mapping fields get their own hooks because cattrs happily iterates a
#   string into a tuple of characters; here a table or text where an array belongs is a
#   problem with its path.
# * Rejected: pydantic-settings (a second data-model library beside attrs), and
#   `attrs.validators.set_disabled` to collect errors (a process-wide switch that would
#   also disable validation in other threads, such as the SQLite worker).

from __future__ import annotations

import decimal
import enum
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import attrs
import cattrs
from cattrs.errors import (
    AttributeValidationNote,
    BaseValidationError,
    ClassValidationError,
    IterableValidationError,
    IterableValidationNote,
)
from tradewind.runtime._errors import ConfigError

if typing.TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator

__all__ = [
    "Secret",
    "load_config",
    "dump_config",
    "config_converter",
    "positive",
    "non_negative",
    "fraction",
    "in_range",
    "non_empty",
]

T = TypeVar("T")

MASK = "***"
# The longest text quoted whole in a problem line.
_SHOWN = 40


# ---------------------------------------------------------------------------- Secret


@attrs.frozen(repr=False)
class Secret:
    """A credential (password, token, DSN) that never shows itself.

    ``str()``, ``repr()``, ``format()`` and the log form are all ``***``; only
    ``reveal()`` gives the value, so revealing it is a visible, greppable act. Two
    secrets are equal when their values are; a secret never equals a plain string.
    """

    _value: str = attrs.field(alias="value", validator=attrs.validators.instance_of(str))

    def reveal(self) -> str:
        """Return the secret value itself; pass it only to the library that needs it."""
        return self._value

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return MASK

    def __format__(self, format_spec: str) -> str:
        return MASK


# ---------------------------------------------------------------------------- validators


# The password in a URL's user-info: scheme://user:PASSWORD@host. The password may hold
# a raw "/" (people do not always percent-encode), so it runs to the first "@".
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^\s:/@]*:)[^\s@]+(?=@)", re.I)
# The password in a libpq keyword/value DSN: password=PASSWORD or password='PASS WORD'
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\b(?:password|passwd|pwd)\s*=\s*)(?:'[^']*'|\S+)", re.I)


def mask_passwords(text: str) -> str:
    """``text`` with the password in a URL's user-info or a ``password=`` keyword
    replaced by ``***`` (a DSN written where a plain string was expected)."""
    if "=" not in text and "://" not in text:
        return text
    text = _URL_PASSWORD.sub(lambda m: m["head"] + MASK, text)
    return _KEYWORD_PASSWORD.sub(lambda m: m["head"] + MASK, text)


def _show(value: object) -> str:
    """Render a configured value for a problem line, TOML-style and secrets masked."""
    if isinstance(value, Secret):
        return MASK
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # A secret given where another kind of value belongs (`store = "postgresql://
        # user:pw@host/db"` for the `[store]` table) is still a secret. Masked before
        # the text is cut, so a cut cannot leave part of a password unmasked.
        text = mask_passwords(str(value))
        # A problem line is one line: a stray blob of text is shown by its start.
        return repr(text) if len(text) <= _SHOWN else repr(text[:_SHOWN]) + "..."
    if isinstance(value, decimal.Decimal | int | float):
        return str(value)
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    return repr(value)


Number = decimal.Decimal | int | float


def positive(_instance: object, _attribute: attrs.Attribute[Any], value: Number) -> None:
    """attrs validator: the value must be > 0 (a size, a rate, a tick)."""
    if not value > 0:
        msg = f"must be > 0, got {_show(value)}"
        raise ValueError(msg)


def non_negative(_instance: object, _attribute: attrs.Attribute[Any], value: Number) -> None:
    """attrs validator: the value must be >= 0 (a limit, where 0 means "none allowed")."""
    if not value >= 0:
        msg = f"must be >= 0, got {_show(value)}"
        raise ValueError(msg)


def fraction(_instance: object, _attribute: attrs.Attribute[Any], value: Number) -> None:
    """attrs validator: the value must lie in (0, 1] (a share of capital, a ratio)."""
    if not 0 < value <= 1:
        msg = f"must be in (0, 1], got {_show(value)}"
        raise ValueError(msg)


def in_range(low: Number, high: Number) -> Callable[[object, attrs.Attribute[Any], Number], None]:
    """Return an attrs validator: the value must lie in [low, high], both included."""
    if not low <= high:
        msg = f"in_range: low must be <= high, got {low} and {high}"
        raise ValueError(msg)

    def validate(_instance: object, _attribute: attrs.Attribute[Any], value: Number) -> None:
        if not low <= value <= high:
            msg = f"must be in [{_show(low)}, {_show(high)}], got {_show(value)}"
            raise ValueError(msg)

    return validate


def non_empty(
    _instance: object, _attribute: attrs.Attribute[Any], value: str | Sequence[object]
) -> None:
    """attrs validator: a string or a sequence must not be empty."""
    if len(value) == 0:
        msg = f"must not be empty, got {_show(value) if isinstance(value, str) else '[]'}"
        raise ValueError(msg)


# ---------------------------------------------------------------------------- structuring


class _EnvText(str):
    """A value taken from the environment: text to be parsed into the field's type."""

    __slots__ = ()


class _Invalid(ValueError):
    """One problem with one value; the message is the text after ``path (ENV): ``."""


def _expected(what: str, value: object) -> _Invalid:
    return _Invalid(f"expected {what}, got {_show(value)}")


def _structure_str(value: object, _type: object) -> str:
    if isinstance(value, str):
        return str(value)
    raise _expected("a string", value)


def _structure_int(value: object, _type: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, _EnvText):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise _expected("an integer", value)


def _parse_decimal(value: object) -> decimal.Decimal | None:
    """The exact Decimal for a TOML number or numeric text; None if there is none."""
    if isinstance(value, bool):
        return None
    if isinstance(value, decimal.Decimal):
        result = value
    elif isinstance(value, int):
        result = decimal.Decimal(value)
    elif isinstance(value, str):
        try:
            result = decimal.Decimal(value.strip())
        except decimal.InvalidOperation:
            return None
    else:
        return None
    return result if result.is_finite() else None


def _structure_decimal(value: object, _type: object) -> decimal.Decimal:
    result = _parse_decimal(value)
    if result is None:
        raise _expected("a decimal number", value)
    return result


def _structure_float(value: object, _type: object) -> float:
    # Plain TOML strings are not numbers; environment text is.
    number = None if type(value) is str else _parse_decimal(value)
    if number is None:
        raise _expected("a number", value)
    if not math.isfinite(float(number)):  # 1e400 is a finite Decimal
        raise _expected("a finite number", value)
    return float(number)


def _untyped(value: object) -> object:
    """A value for a setting without a declared type (a strategy's ``params``): the
    environment's text read as the TOML value it spells (``false``, ``5``, ``0.25``,
    ``"text"``, ``[1, 2]``), else kept as the text itself; TOML values as they are."""
    if isinstance(value, dict):
        return {key: _untyped(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_untyped(item) for item in value]
    if not isinstance(value, _EnvText):
        return value
    try:
        return tomllib.loads(f"v = {value}", parse_float=decimal.Decimal)["v"]
    except tomllib.TOMLDecodeError:
        return str(value)


_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


def _structure_bool(value: object, _type: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, _EnvText):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise _expected("true or false", value)


def _structure_path(value: object, _type: object) -> Path:
    if isinstance(value, str) and value:
        return Path(value)
    raise _expected("a path", value)


def _structure_secret(value: object, _type: object) -> Secret:
    if isinstance(value, str):
        return Secret(str(value))
    raise _expected("a string", value)


def _choose(value: object, choices: Sequence[object]) -> int:
    """The index of the choice ``value`` names (env text matches by text), or -1."""
    for index, choice in enumerate(choices):
        if type(value) is type(choice) and value == choice:
            return index
        if isinstance(value, _EnvText) and str(value) == str(choice):
            return index
    return -1


def _one_of(choices: Sequence[object]) -> str:
    return "one of " + ", ".join(_show(c) for c in choices)


def _is_enum(type_: object) -> bool:
    return isinstance(type_, type) and issubclass(type_, enum.Enum)


def _structure_enum(value: object, type_: type[enum.Enum]) -> enum.Enum:
    members = list(type_)
    index = _choose(value, [m.value for m in members])
    if index < 0:
        raise _expected(_one_of([m.value for m in members]), value)
    return members[index]


def _is_literal(type_: object) -> bool:
    return typing.get_origin(type_) is Literal


def _structure_literal(value: object, type_: object) -> object:
    choices = typing.get_args(type_)
    index = _choose(value, choices)
    if index < 0:
        raise _expected(_one_of(choices), value)
    return choices[index]


def _is_union(type_: object) -> bool:
    return typing.get_origin(type_) in (typing.Union, types.UnionType)


def _is_sequence(type_: object) -> bool:
    origin = typing.get_origin(type_)
    if origin is tuple:
        args = typing.get_args(type_)
        return len(args) == 2 and args[1] is Ellipsis
    return origin in (list, Sequence)


def _is_mapping(type_: object) -> bool:
    return typing.get_origin(type_) in (dict, Mapping)


# Exceptions a hook turns into problems. Anything else (a schema the converter has no
# hook for, a bug) propagates: it is the program's fault, not the configuration's.
_PROBLEMS = (ValueError, TypeError, BaseValidationError)


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=True)

    def structure_union(value: object, type_: object) -> object:
        members = typing.get_args(type_)
        if value is None and type(None) in members:
            return None
        others = [m for m in members if m is not type(None)]
        if len(others) == 1:
            # `X | None`: a value is an X, and its problems are reported as X's.
            return converter.structure(value, others[0])
        for member in others:
            try:
                return converter.structure(value, member)
            except _PROBLEMS:
                continue
        raise _expected("one of " + ", ".join(_type_name(m) for m in others), value)

    def sequence_hook(type_: object) -> Callable[[object, object], object]:
        item_type = typing.get_args(type_)[0]
        make = tuple if typing.get_origin(type_) in (tuple, Sequence) else list

        def structure(value: object, _type: object) -> object:
            if not isinstance(value, list | tuple):
                raise _expected("an array", value)
            items: list[object] = []
            errors: list[Exception] = []
            for index, item in enumerate(value):
                try:
                    items.append(converter.structure(item, item_type))
                except _PROBLEMS as exc:
                    exc.add_note(IterableValidationNote(f"@ [{index}]", index, item_type))
                    errors.append(exc)
            if errors:
                msg = f"While structuring {type_!r}"
                raise IterableValidationError(msg, errors, make)
            return make(items)

        return structure

    def mapping_hook(type_: object) -> Callable[[object, object], object]:
        args = typing.get_args(type_)
        value_type = args[1] if len(args) == 2 else Any

        def structure(value: object, _type: object) -> object:
            if not isinstance(value, Mapping):
                raise _expected("a table", value)
            result: dict[str, object] = {}
            errors: list[Exception] = []
            for key, item in value.items():
                try:
                    if value_type is Any:
                        result[str(key)] = _untyped(item)
                        continue
                    result[str(key)] = converter.structure(item, value_type)
                except _PROBLEMS as exc:
                    exc.add_note(IterableValidationNote(f"@ [{key!r}]", str(key), value_type))
                    errors.append(exc)
            if errors:
                msg = f"While structuring {type_!r}"
                raise IterableValidationError(msg, errors, dict)
            return result

        return structure

    def attrs_hook(cls: type[Any]) -> Callable[[object, object], object]:
        fields = [f for f in attrs.fields(attrs.resolve_types(cls)) if f.init]
        known = {f.name for f in fields}

        def structure(value: object, _type: object) -> object:
            if not isinstance(value, Mapping):
                raise _expected("a table", value)
            kwargs: dict[str, object] = {}
            errors: list[Exception] = []
            for field in fields:
                note = AttributeValidationNote(f"@ {field.name}", field.name, field.type)
                if field.name not in value:
                    if field.default is attrs.NOTHING:
                        missing = _Invalid("required, missing")
                        missing.add_note(note)
                        errors.append(missing)
                    continue
                try:
                    item = converter.structure(value[field.name], field.type)
                    if field.validator is not None:
                        field.validator(None, field, item)
                except _PROBLEMS as exc:
                    exc.add_note(note)
                    errors.append(exc)
                else:
                    kwargs[field.alias] = item
            for key in value:
                if key not in known:
                    unknown = _Invalid(_unknown(cls, known))
                    unknown.add_note(AttributeValidationNote(f"@ {key}", str(key), None))
                    errors.append(unknown)
            if errors:
                msg = f"While structuring {cls.__name__}"
                raise ClassValidationError(msg, errors, cls)
            # Field validators passed; construction adds any class-level invariant.
            return cls(**kwargs)

        return structure

    converter.register_structure_hook_factory(attrs.has, attrs_hook)
    converter.register_structure_hook_factory(_is_mapping, mapping_hook)
    converter.register_structure_hook_factory(_is_sequence, sequence_hook)
    converter.register_structure_hook_func(_is_union, structure_union)
    converter.register_structure_hook_func(_is_literal, _structure_literal)
    converter.register_structure_hook_func(_is_enum, _structure_enum)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(float, _structure_float)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(decimal.Decimal, _structure_decimal)
    converter.register_structure_hook(Path, _structure_path)
    converter.register_structure_hook(Secret, _structure_secret)

    converter.register_unstructure_hook(Secret, lambda _secret: MASK)
    converter.register_unstructure_hook(decimal.Decimal, str)
    converter.register_unstructure_hook(Path, str)
    converter.register_unstructure_hook_func(
        _is_sequence, lambda seq: [converter.unstructure(item) for item in seq]
    )
    return converter


def _unknown(cls: type[Any], known: Iterable[str]) -> str:
    return f"unknown setting; {cls.__name__} has {', '.join(sorted(known))}"


def _type_name(type_: object) -> str:
    return getattr(type_, "__name__", repr(type_))


config_converter = _make_converter()
"""The converter for configuration: strict, exact (Decimal), and all-problems-at-once."""


# ---------------------------------------------------------------------------- problems

Segment = str | int


def _problems(
    exc: BaseException, path: tuple[Segment, ...]
) -> Iterator[tuple[tuple[Segment, ...], str]]:
    """Flatten a structuring failure into (path, message) pairs, in field order."""
    if isinstance(exc, ClassValidationError):
        noted, plain = exc.group_exceptions()
        for sub, attr_note in noted:
            yield from _problems(sub, (*path, attr_note.name))
        for sub in plain:
            yield from _problems(sub, path)
    elif isinstance(exc, IterableValidationError):
        noted_items, plain = exc.group_exceptions()
        for sub, item_note in noted_items:
            yield from _problems(sub, (*path, item_note.index))
        for sub in plain:
            yield from _problems(sub, path)
    else:
        yield path, str(exc) or type(exc).__name__


def _dotted(path: Sequence[Segment]) -> str:
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        elif segment.isidentifier():
            text += f".{segment}" if text else segment
        else:
            text += f"[{segment!r}]"
    return text or "(top level)"


def _env_name(path: Sequence[Segment], prefix: str) -> str | None:
    if not path or any(isinstance(s, int) or not s.isidentifier() for s in path):
        return None
    return prefix + "__".join(str(s).upper() for s in path)


def _line(path: Sequence[Segment], message: str, prefix: str) -> str:
    env_name = _env_name(path, prefix)
    where = _dotted(path) if env_name is None else f"{_dotted(path)} ({env_name})"
    return f"{where}: {message}"


# ---------------------------------------------------------------------------- loading


def _apply_env(
    document: dict[str, Any], cls: type[Any], env: Mapping[str, str], prefix: str
) -> list[str]:
    """Lay ``prefix``-named environment variables onto the document; return problems."""
    problems: list[str] = []
    top_level = {f.name for f in attrs.fields(cls)}
    for name in sorted(env):
        if not name.startswith(prefix) or len(name) == len(prefix):
            continue
        segments = name[len(prefix) :].lower().split("__")
        if len(segments) == 1 and segments[0] not in top_level:
            continue  # another tool's variable sharing the prefix, e.g. TRADEWIND_TEST_DSN
        if not all(segments):
            problems.append(f"{name}: malformed setting name (empty part between '__')")
            continue
        if segments[0] not in top_level:
            problems.append(f"{_dotted(segments)} ({name}): {_unknown(cls, top_level)}")
            continue
        table: dict[str, Any] = document
        for depth, segment in enumerate(segments[:-1]):
            inner = table.setdefault(segment, {})
            if not isinstance(inner, dict):
                problems.append(
                    f"{_dotted(segments)} ({name}): cannot be set, "
                    f"{_dotted(segments[: depth + 1])} is not a table"
                )
                break
            table = inner
        else:
            table[segments[-1]] = _EnvText(env[name])
    return problems


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    *,
    text: str | None = None,
    env: Mapping[str, str] | None = None,
    prefix: str = "TRADEWIND_",
) -> T:
    """Load a configuration of type ``cls`` from TOML and the environment.

    The TOML document (``text``, else the file at ``path``, else empty) is parsed with
    every float read as the exact ``Decimal`` of its literal. Environment variables
    named ``prefix`` + the setting's path in upper case, joined by ``__``, override
    it (``TRADEWIND_RISK__MAX_POSITION`` sets ``risk.max_position``); their text is
    converted to the field's type. The result is structured into ``cls`` (a frozen attrs
    class whose fields may be str, int, float, bool, Decimal, Path, Secret, enums (by
    value), ``Literal[...]``, ``X | None``, nested attrs classes, ``tuple[X, ...]`` or
    ``list[X]``, ``dict[str, X]``) and every validator is run.

    Args:
        cls: The attrs class of the configuration.
        path: The TOML file to read, unless ``text`` is given (then ``path`` only names
            the source in errors).
        text: The TOML document itself.
        env: The environment to read overrides from; None means ``os.environ``.
        prefix: The prefix of the environment variables that override settings.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: The file cannot be read, is not valid TOML, or the settings have
            problems. ``problems`` lists all of them, one line each, such as
            ``risk.max_position (TRADEWIND_RISK__MAX_POSITION): must be >= 0, got -5``.
    """
    source = str(path) if path is not None else "configuration"
    if text is None and path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError([f"cannot read {source}: {exc}"], source) from exc
    try:
        document = tomllib.loads(text or "", parse_float=decimal.Decimal)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"invalid TOML: {exc}"], source) from exc
    problems = _apply_env(document, cls, os.environ if env is None else env, prefix)
    try:
        config = config_converter.structure(document, cls)
    except _PROBLEMS as exc:
        problems += [_line(where, message, prefix) for where, message in _problems(exc, ())]
        raise ConfigError(problems, source) from exc
    if problems:
        raise ConfigError(problems, source)
    return config


def dump_config(config: object) -> dict[str, Any]:
    """The effective configuration as plain data for display, every ``Secret`` ``***``.

    Decimals and paths become strings (exact), enums their values, tuples lists.
    """
    data: dict[str, Any] = config_converter.unstructure(config)
    return data
