"""Timing and reporting helpers of the benchmark scripts in this folder.

No MXNet import at module level: ``compare_peers.py`` times PyTorch in processes that must
not load MXNet (its libraries would count in the peer's peak memory); only
:func:`write_csv` (and :func:`merge_csv`, through it) imports gluonseg. Scripts import it
with their own folder on ``sys.path``::

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _timing import median_seconds, write_csv
"""
import csv
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time

__all__ = ['median_seconds', 'parse_size', 'machine_description', 'peak_rss_mb', 'write_csv',
           'merge_csv', 'print_row', 'print_result', 'run_child']

RESULT_PREFIX = 'RESULT '


def median_seconds(fn, warmup=1, repeat=3):
    """Median wall time of ``fn()`` over ``repeat`` calls after ``warmup`` untimed ones.

    ``fn`` must return only when its work is done (wait for MXNet's asynchronous engine,
    e.g. ``mx.nd.waitall()``, inside it).
    """
    if repeat < 1:
        raise ValueError('repeat must be at least 1, got %d' % repeat)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def parse_size(text):
    """``'480'`` -> (480, 480); ``'800x1088'`` -> (800, 1088) as (height, width)."""
    height, _, width = str(text).partition('x')
    try:
        size = int(height), int(width or height)
    except ValueError:
        raise ValueError('a size is "H" or "HxW" in pixels, not %r' % (text,)) from None
    if min(size) < 1:
        raise ValueError('a size must be positive, not %r' % (text,))
    return size


def machine_description():
    """``'<CPU model name>, <N> cores'`` of this machine (Linux: from /proc/cpuinfo)."""
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return '%s, %d cores' % (name, os.cpu_count() or 0)


def print_result(result):
    """Hand ``result`` (JSON-serializable) to the parent that started this process with
    :func:`run_child`."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def run_child(argv, env=None):
    """Run ``python argv...`` in a fresh process (nothing of this one's memory or caches);
    (what it passed to :func:`print_result`, None), or (None, its last error line)."""
    proc = subprocess.run([sys.executable] + list(argv), env=env, capture_output=True,
                          text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):]), None
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    errors = [line for line in lines if re.match(r'[\w.]*(Error|Exception)\b', line)]
    return None, (errors or lines or ['exit status %d' % proc.returncode])[-1][:300]


def peak_rss_mb():
    """Peak resident memory of this process so far, in MiB (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == 'darwin' else peak / 1024.0


def write_csv(path, rows, fields):
    """Write ``rows`` (dicts) with the columns ``fields`` to ``path`` whole or not at all."""
    from gluonseg.utils.atomic import write_atomically  # imports MXNet: only when writing

    def write(f):
        writer = csv.DictWriter(f, fields, extrasaction='ignore', lineterminator='\n')
        writer.writeheader()
        writer.writerows(rows)
    return write_atomically(path, write, binary=False)


def merge_csv(path, rows, fields, key):
    """Write ``rows`` into the CSV file at ``path``, replacing only the rows already there
    whose ``key`` column holds a value that ``rows`` have; the file is written whole or not at
    all (:func:`write_csv`).

    A script measuring one model re-writes that model's rows and keeps those other runs put
    there. The other rows keep their place and order; the new rows of a ``key`` value already
    in the file go where its first old row was (all its old rows go), those of a new value at
    the end. A missing file is created. The file's columns become ``fields``: old rows keep
    the values of those columns (as read: text), other columns are dropped, missing ones left
    empty. Returns ``path``.
    """
    try:
        with open(path, newline='') as f:
            old = list(csv.DictReader(f))
    except FileNotFoundError:
        old = []
    replaced = {str(row[key]) for row in rows}
    merged, placed = [], set()
    for row in old:
        value = row.get(key)
        if value not in replaced:
            merged.append(row)
        elif value not in placed:
            placed.add(value)
            merged.extend(new for new in rows if str(new[key]) == value)
    merged.extend(new for new in rows if str(new[key]) not in placed)
    return write_csv(path, merged, fields)


def print_row(template, row):
    """Print ``template.format(**row)`` at once (benchmarks run for minutes: show progress)."""
    print(template.format(**row), flush=True)
