"""Command-line tools shared by the scripts and the ``gluonseg`` command."""
import argparse
import re


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Adds "(default: VALUE)" to an option's help once: not when the help already says its
    default (it mentions "default": a default computed at run time, e.g. "default: resnet18
    on shapes"), not when there is no value to show (None, ''), and not for a flag (an
    option without a value, off unless given: the default of ``--no-X`` is X's)."""

    def _get_help_string(self, action):
        if action.default is None or action.default == '' or action.nargs == 0 or \
                re.search(r'\bdefault\b', action.help or '', re.IGNORECASE):
            return action.help
        return super()._get_help_string(action)


def tool_parser(module_doc, description=None, subparsers=None, name=None, help=None):
    """The argument parser of a tool: its description is ``description`` or the first paragraph
    of the tool module's docstring, and ``--help`` shows each option's default once
    (:class:`DefaultsHelpFormatter`).

    With ``subparsers`` (of ``ArgumentParser.add_subparsers``), the parser of the sub-command
    ``name`` (listed with ``help``): the ``gluonseg`` command's tools then print the same help
    as the scripts."""
    settings = dict(description=description or module_doc.split('\n\n')[0],
                    formatter_class=DefaultsHelpFormatter)
    if subparsers is None:
        return argparse.ArgumentParser(**settings)
    return subparsers.add_parser(name, help=help, **settings)
