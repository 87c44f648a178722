"""Build the tutorial notebooks (``docs/tutorials/*.ipynb``) from their sources.

Each source ``docs/tutorials/src/NN_name.py`` is a Python file in the "percent" format: a
line ``# %%`` starts a code cell, ``# %% [markdown]`` a markdown cell whose lines are
comments (``# `` is stripped). The notebooks are written without outputs; the test suite
(``tests/test_notebooks.py``) executes them.

    python docs/tutorials/build.py           # write the notebooks
    python docs/tutorials/build.py --check   # exit 1 if a notebook differs from its source
"""
import argparse
import glob
import os
import re
import sys

import nbformat

HERE = os.path.dirname(os.path.abspath(__file__))
CELL = re.compile(r'^# %%(.*)$')


def parse_source(text):
    """``[(kind, source)]`` cells of a percent-format file."""
    cells, kind, lines = [], None, []

    def flush():
        if kind is not None:
            body = '\n'.join(lines).strip('\n')
            if kind == 'markdown':
                body = '\n'.join(re.sub(r'^# ?', '', line) for line in body.split('\n'))
            if body.strip():
                cells.append((kind, body))

    for line in text.split('\n'):
        match = CELL.match(line)
        if match:
            flush()
            kind, lines = ('markdown' if '[markdown]' in match.group(1) else 'code'), []
        elif kind is not None:
            lines.append(line)
    flush()
    return cells


def build_notebook(path):
    with open(path) as f:
        cells = parse_source(f.read())
    nb = nbformat.v4.new_notebook()
    nb.metadata = {'kernelspec': {'display_name': 'Python 3', 'language': 'python',
                                  'name': 'python3'},
                   'language_info': {'name': 'python'}}
    for n, (kind, body) in enumerate(cells):
        make = nbformat.v4.new_markdown_cell if kind == 'markdown' else \
            nbformat.v4.new_code_cell
        cell = make(body)
        cell['id'] = 'cell-%02d' % n  # stable ids: rebuilding gives the same file
        nb.cells.append(cell)
    return nbformat.writes(nb) + '\n'


def targets():
    """``{notebook path: source path}``."""
    sources = sorted(glob.glob(os.path.join(HERE, 'src', '[0-9]*.py')))
    return {os.path.join(HERE, os.path.basename(s)[:-3] + '.ipynb'): s for s in sources}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='do not write; exit 1 when a notebook is missing or stale')
    args = parser.parse_args(argv)
    stale = []
    for notebook, source in targets().items():
        text = build_notebook(source)
        current = open(notebook).read() if os.path.isfile(notebook) else None
        if current == text:
            continue
        if args.check:
            stale.append(os.path.relpath(notebook, HERE))
        else:
            with open(notebook, 'w') as f:
                f.write(text)
            print('wrote', os.path.relpath(notebook))
    if stale:
        print('stale notebooks (run python docs/tutorials/build.py): ' + ', '.join(stale))
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
