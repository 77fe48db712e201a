"""Every experiment driver's command line: usage names the module (``python -m models.<name>``) and every option
has help text."""

import argparse
import contextlib
import importlib
import io

import pytest

DRIVERS = ["train", "taylor_expansion", "distill", "nnqft", "ising_rg", "ising_rbm", "ising_mc"]


class _Captured(Exception):
    pass


def _parsers(module_name, monkeypatch):
    """The ArgumentParsers a driver's main() builds (captured at parse time, nothing runs)."""
    seen = []

    def capture(self, args=None, namespace=None):
        seen.append(self)
        raise _Captured

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", capture)
    module = importlib.import_module(f"models.{module_name}")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(_Captured, SystemExit):
        module.main(["--help"])
    assert seen, f"models.{module_name}.main() builds no ArgumentParser"
    return seen


def _actions(parser, path):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, path + [name])
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


@pytest.mark.parametrize("name", DRIVERS)
def test_every_option_has_help_and_usage_names_the_module(name, monkeypatch):
    for parser in _parsers(name, monkeypatch):
        assert parser.prog.startswith(f"python -m models.{name}"), parser.prog
        missing = [(" ".join(path), action.option_strings or action.dest)
                   for path, action in _actions(parser, [name]) if not action.help]
        assert not missing, f"options without help text: {missing}"
