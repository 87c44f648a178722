"""Regenerate the model tables of README.md and docs/model_zoo.md from the registry.

    python scripts/update_model_tables.py          # rewrite the files
    python scripts/update_model_tables.py --check  # exit 1 when a file is stale
"""
import argparse
import os
import sys

from gluonseg.model_zoo.model_table import full_table, published_table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START, END = '<!-- model-table:start -->', '<!-- model-table:end -->'


def tables():
    """{file: generated table} for every file that holds a generated table."""
    return {
        os.path.join(ROOT, 'README.md'): published_table(),
        os.path.join(ROOT, 'docs', 'model_zoo.md'):
            '## Published weights\n\nNumbers are GluonCV\'s published ones (not yet measured by '
            'gluonseg).\n\n' + published_table() + '\n## Every registered model\n\n'
            + full_table(),
    }


def replace_between_markers(text, table, path):
    if START not in text or END not in text:
        raise SystemExit('%s has no %s ... %s markers' % (path, START, END))
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + START + '\n' + table + END + tail


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--check', action='store_true', help='only report stale files')
    args = parser.parse_args(argv)
    stale = []
    for path, table in tables().items():
        with open(path) as f:
            text = f.read()
        updated = replace_between_markers(text, table, path)
        if updated != text:
            stale.append(path)
            if not args.check:
                with open(path, 'w') as f:
                    f.write(updated)
    for path in stale:
        print('%s %s' % ('stale:' if args.check else 'updated:', os.path.relpath(path, ROOT)))
    return 1 if (args.check and stale) else 0


if __name__ == '__main__':
    sys.exit(main())
