"""Command-line tools shared by the scripts and the ``gluonseg`` command."""
import argparse


def tool_parser(module_doc, description=None, subparsers=None, name=None, help=None):
    """The argument parser of a tool: its description is ``description`` or the first paragraph
    of the tool module's docstring, and ``--help`` shows the defaults.

    With ``subparsers`` (of ``ArgumentParser.add_subparsers``), the parser of the sub-command
    ``name`` (listed with ``help``): the ``gluonseg`` command's tools then print the same help
    as the scripts."""
    settings = dict(description=description or module_doc.split('\n\n')[0],
                    formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if subparsers is None:
        return argparse.ArgumentParser(**settings)
    return subparsers.add_parser(name, help=help, **settings)
