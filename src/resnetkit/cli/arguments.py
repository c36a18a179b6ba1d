"""Argument types shared by the commands."""

from __future__ import annotations

import argparse

import yaml


def key_value(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)  # numbers, booleans and lists as in a recipe
    except yaml.YAMLError:
        raise argparse.ArgumentTypeError(f"cannot read the value of {text!r}") from None


def add_pretrained_argument(p: argparse.ArgumentParser | argparse._ArgumentGroup, help_text: str) -> None:
    """``--pretrained [TAG]``: True without a tag (the model's default weights), else the tag."""
    p.add_argument("--pretrained", nargs="?", const=True, metavar="TAG", help=help_text)
