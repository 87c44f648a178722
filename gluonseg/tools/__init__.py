"""Command-line tools shared by the scripts and the ``gluonseg`` command."""
import argparse


def tool_parser(module_doc, description=None):
    """The argument parser of a tool: its description is ``description`` or the first paragraph
    of the tool module's docstring, and ``--help`` shows the defaults."""
    return argparse.ArgumentParser(description=description or module_doc.split('\n\n')[0],
                                   formatter_class=argparse.ArgumentDefaultsHelpFormatter)
