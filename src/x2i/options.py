"""Command-line options built from config dataclasses, so that every default is written once.

A field declared with `option(default, "help", ...)` becomes `--field-name` with that default,
type and help; `choices`, `metavar` and `flag` (the option's name, e.g. `--no-gradient-checkpointing`
for a boolean that defaults to True) pass through to argparse.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Each option's default in `--help`, where there is one to show: not for a required option, a
    switch (it is off unless given), a default of None (unset), or a help that already says it."""

    def _get_help_string(self, action):
        if action.required or action.nargs == 0 or action.default is None or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def option(default=dataclasses.MISSING, help: str = "", **argparse_kwargs):
    """A dataclass field that is also a command-line option."""
    return dataclasses.field(default=default, metadata={"help": help, **argparse_kwargs})


def add_options(parser: argparse.ArgumentParser, config_class, skip: tuple[str, ...] = ()) -> None:
    hints = typing.get_type_hints(config_class)
    for f in dataclasses.fields(config_class):
        if f.name in skip or "help" not in f.metadata:
            continue
        meta = dict(f.metadata)
        flag = meta.pop("flag", "--" + f.name.replace("_", "-"))
        kind = hints[f.name]
        required = f.default is dataclasses.MISSING
        if kind is bool:
            action = "store_false" if f.default else "store_true"
            parser.add_argument(flag, dest=f.name, action=action, help=meta.pop("help"))
            continue
        if isinstance(kind, types.UnionType):  # int | None -> int
            kind = next(t for t in typing.get_args(kind) if t is not type(None))
        kwargs = {"required": True} if required else {"default": f.default}
        if meta.pop("nargs", None) == "*":  # tuple[int, ...]
            kwargs.update(nargs="*", type=typing.get_args(kind)[0], default=list(f.default))
        else:
            kwargs["type"] = kind
        parser.add_argument(flag, dest=f.name, **kwargs, **meta)


def config_from_args(config_class, args: argparse.Namespace, **overrides):
    """The config with every option the user gave (or its default), then `overrides`."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_class) if hasattr(args, f.name)}
    values.update(overrides)
    for f in dataclasses.fields(config_class):
        if isinstance(values.get(f.name), list) and isinstance(f.default, tuple):
            values[f.name] = tuple(values[f.name])
    return config_class(**values)


def command_line(program: str, config) -> str:
    """The command that makes `config`: `program` and every option whose value is not its default
    (the one written in model cards, so that a run made from Python reads as the command too)."""
    import shlex

    words = program.split()
    for f in dataclasses.fields(config):
        if "help" not in f.metadata:
            continue
        value = getattr(config, f.name)
        if f.default is not dataclasses.MISSING and value == f.default:
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        if isinstance(value, bool):
            words.append(flag)
        elif isinstance(value, (tuple, list)):
            words += [flag, *map(str, value)]
        elif value is not None:
            words += [flag, str(value)]
    return shlex.join(words)
