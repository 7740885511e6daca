"""Base for the package's dataclass configs: JSON round trip with validation and clear messages.

Each concern (model, data, training) has its own dataclass deriving from :class:`JsonConfig`; it is
stored in the run directory as JSON and validated on load.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from pathlib import Path
from typing import Any, TypeVar

from marker_excite.atomic import write_text
from marker_excite.errors import UserInputError

T = TypeVar("T", bound="JsonConfig")


class ConfigError(UserInputError):
    """A config value or file that is invalid; the message names the field."""


@dataclasses.dataclass
class JsonConfig:
    """Mixin for frozen-by-convention dataclass configs."""

    def validate(self) -> None:
        """Override to check values; raise :class:`ConfigError` naming the field."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, JsonConfig):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = [list(x) if isinstance(x, tuple) else x for x in v]
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__}: expected a JSON object, got {type(data).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown field(s) {', '.join(unknown)}; known: {', '.join(names)}")
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            hint = hints.get(key)
            kwargs[key] = _coerce(hint, value)
        try:
            obj = cls(**kwargs)
        except TypeError as exc:
            raise ConfigError(f"{cls.__name__}: {exc}") from None
        obj.validate()
        return obj

    @classmethod
    def with_defaults(cls, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` (a stored config) plus the default of every field it lacks, e.g. a field added after
        the config was written, so that comparing it with a new config flags real differences only."""
        return {**{k: v for k, v in cls().to_dict().items() if k not in data}, **data}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2) + "\n"
        if path is not None:
            write_text(path, text)
        return text

    @classmethod
    def from_json(cls: type[T], source: str | os.PathLike) -> T:
        """Load from a JSON file path or a JSON string."""
        text = str(source)
        if not text.lstrip().startswith("{"):
            p = Path(source)
            if not p.is_file():
                raise ConfigError(f"config file {p} does not exist")
            text = p.read_text()
            where = str(p)
        else:
            where = "<string>"
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"config {where} is not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def replace(self: T, **changes: Any) -> T:
        obj = dataclasses.replace(self, **changes)
        obj.validate()
        return obj


def split_list(
    text: str, *, what: str, allow_empty: bool = False, error: type[UserInputError] = UserInputError
) -> tuple[str, ...]:
    """The entries of a comma-separated list such as an option value (``"DAPI, collagen"``), each stripped
    of surrounding whitespace.

    An empty entry (``"a,,b"``, ``"a,"``) raises ``error`` naming ``what`` (the option or value read); so
    does a list without any entry (``""``, ``" "``) unless ``allow_empty``, which gives ``()``. Number
    lists parse the entries themselves (``error`` is a ``ValueError``, as a bad number's).
    """
    if not text.strip():
        if allow_empty:
            return ()
        raise error(f"{what}: empty list, give at least one entry")
    items = tuple(part.strip() for part in text.split(","))
    if not all(items):
        raise error(f"{what}: empty entry in {text!r}")
    return items


def read_json_object(path: Path, missing: str, error: type[Exception] = ConfigError) -> dict[str, Any]:
    """Read a JSON object from ``path``; raise ``error`` with ``missing`` if absent, naming the file if corrupt."""
    if not path.is_file():
        raise error(missing)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path} is corrupt (not valid JSON: {exc})") from None
    if not isinstance(data, dict):
        raise error(f"{path} is corrupt: expected a JSON object")
    return data


def _coerce(hint: Any, value: Any) -> Any:
    """Turn JSON lists back into tuples and nested dicts into nested configs where the hint says so."""
    if value is None or hint is None:
        return value
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Union or str(origin) == "types.UnionType":
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value)
            except Exception:  # noqa: BLE001 - try the next member
                continue
        return value
    if isinstance(hint, type) and issubclass(hint, JsonConfig) and isinstance(value, dict):
        return hint.from_dict(value)
    if origin is tuple and isinstance(value, list):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v) for a, v in zip(args, value))
        return tuple(value)
    if origin is dict and isinstance(value, dict) and len(args) == 2:
        return {k: _coerce(args[1], v) for k, v in value.items()}
    return value
