"""The folder of a training run and its files: held by one run at a time, cleared of what
killed runs left behind; the checkpoints' names, the log (``train.log``), the validation
records (``metrics.jsonl``, written whole) and the training curves (``curves.png``).

- :meth:`RunDirectory.claim` takes an exclusive lock (:class:`~gluonseg.utils.filelock.FileLock`,
  released by the kernel when the holder dies): a second run on the same folder is refused
  with :class:`RunDirectoryInUse`, naming the folder and the holder's pid, instead of both
  overwriting each other's checkpoints and records. The lock file of a killed run is taken over
  with a warning. Holding the lock, the run then removes the temporary files that killed
  writers left (``.latest.ckpt.*.tmp`` and the like): no other writer can be using them.
- ``metrics.jsonl`` is rewritten atomically for every record, so a kill leaves the old file or
  the new one; a torn last line (a file written otherwise) is dropped with a warning naming
  the file, and a damaged line before it is an error naming the file and the line.
- :meth:`RunDirectory.open_log` adds a handler writing the ``gluonseg.train`` log (debug level
  and up) to ``train.log``; :meth:`RunDirectory.plot_curves` draws ``curves.png`` from
  ``metrics.jsonl`` and the log.
"""
import json
import logging
import os
import re

from ..utils.atomic import write_atomically
from ..utils.filelock import FileLock, FileLockTimeout, _pid_alive
from ..utils.plot import plot_training_curves

__all__ = ['RunDirectory', 'RunDirectoryInUse', 'LOCK_FILE', 'LATEST_CHECKPOINT',
           'BEST_CHECKPOINT', 'METRICS_FILE', 'LOG_FILE']

LOCK_FILE = '.run.lock'
LATEST_CHECKPOINT = 'latest.ckpt'
BEST_CHECKPOINT = 'best.ckpt'
METRICS_FILE = 'metrics.jsonl'
LOG_FILE = 'train.log'
# temp_path_beside's names: '.<file name>.<8 random characters>.tmp', and save_checkpoint's
# '<that>.part' beside it.
_TEMP_NAME = re.compile(r'^\..+\.[A-Za-z0-9_]{8}\.tmp(\.part)?$')

logger = logging.getLogger('gluonseg.train')


class RunDirectoryInUse(RuntimeError):
    """Another live process holds the run folder's lock."""


class RunDirectory(object):
    """The run folder ``path`` (created when claimed)."""

    def __init__(self, path):
        self.path = path
        self._lock = None
        self._log_handler = None

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def claimed(self):
        return self._lock is not None and self._lock.is_locked

    def claim(self):
        """Lock the folder for this process (a no-op when already held), then remove the
        temporary files of dead writers. Raises :class:`RunDirectoryInUse` when a live
        process holds it."""
        if self.claimed:
            return
        os.makedirs(self.path, exist_ok=True)
        lock = FileLock(self.file(LOCK_FILE), timeout=0)
        previous, _ = lock._read_holder()
        try:
            lock.acquire()
        except FileLockTimeout as err:
            holder = err.holder if err.holder is not None else 'unknown'
            raise RunDirectoryInUse(
                'The run folder %s is in use by another training run (pid %s): two runs in one '
                'folder overwrite each other\'s checkpoints and records. Wait for it, stop it, '
                'or give this run another --save-dir'
                % (os.path.abspath(self.path), holder)) from None
        self._lock = lock
        if previous is not None and previous != os.getpid() and not _pid_alive(previous):
            logger.warning('Took over the lock of %s from process %d, which is no longer '
                           'running', self.path, previous)
        self.remove_stale_temp_files()

    def release(self):
        """Unlock the folder (a no-op when not held)."""
        lock, self._lock = self._lock, None
        while lock is not None and lock.is_locked:
            lock.release()

    def remove_stale_temp_files(self):
        """Remove the temporary files of writers killed in this folder; returns their names.
        Only call it holding the folder's lock."""
        removed, size = [], 0
        for name in sorted(os.listdir(self.path)):
            path = self.file(name)
            if _TEMP_NAME.match(name) and os.path.isfile(path):
                try:
                    size += os.path.getsize(path)
                    os.remove(path)
                except OSError as err:
                    logger.warning('Could not remove the stale temporary file %s: %s', path, err)
                    continue
                removed.append(name)
        if removed:
            logger.warning('Removed %d temporary file(s) (%.1f MB) left in %s by killed runs: %s',
                           len(removed), size / 1e6, self.path, ', '.join(removed))
        return removed

    # ------------------------------------------------------------------------ metrics file
    def read_records(self, name):
        """The JSON records of the JSON-lines file ``name`` (empty when missing). A torn last
        line is dropped with a warning; any other unreadable line raises a ValueError naming
        the file and the line."""
        path = self.file(name)
        if not os.path.isfile(path):
            return []
        with open(path) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        records = []
        for number, line in enumerate(lines, 1):
            try:
                records.append(json.loads(line))
            except ValueError as err:
                if number == len(lines):
                    logger.warning('Dropped the torn last line of %s (line %d, %d characters: '
                                   'a run was killed while writing it)', path, number, len(line))
                    self.write_records(name, records)
                    break
                raise ValueError('%s: line %d is not a JSON record (%s); fix or remove that '
                                 'line' % (path, number, err)) from None
        return records

    def write_records(self, name, records):
        """Replace the JSON-lines file ``name`` by ``records``, atomically."""
        os.makedirs(self.path, exist_ok=True)
        text = ''.join(json.dumps(record) + '\n' for record in records)
        write_atomically(self.file(name), lambda f: f.write(text), binary=False)

    def append_record(self, name, record):
        """Add ``record`` to the JSON-lines file ``name``; the file is replaced whole."""
        self.write_records(name, self.read_records(name) + [record])

    def drop_records_after(self, name, iteration):
        """Drop the records of the JSON-lines file ``name`` whose ``iteration`` is after
        ``iteration``; returns how many were dropped."""
        records = self.read_records(name)
        kept = [record for record in records if record.get('iteration', 0) <= iteration]
        if len(kept) != len(records):
            self.write_records(name, kept)
        return len(records) - len(kept)

    # ------------------------------------------------------------------- log and curves
    def open_log(self):
        """Write the ``gluonseg.train`` log (debug level and up) to ``train.log`` too, until
        :meth:`close_log` (a no-op when already open)."""
        if self._log_handler is not None:
            return
        os.makedirs(self.path, exist_ok=True)
        handler = logging.FileHandler(self.file(LOG_FILE))
        handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
        handler.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
            logger.setLevel(logging.DEBUG)
        self._log_handler = handler

    def close_log(self):
        handler, self._log_handler = self._log_handler, None
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()

    def plot_curves(self, metrics):
        """Draw ``curves.png`` (the loss and the validation ``metrics``); returns its path, or
        None after logging why nothing was drawn (no matplotlib, nothing logged yet, or a
        drawing error: the run is done and must not lose its result over a picture)."""
        try:
            path = plot_training_curves(self.path, metrics=metrics)
        except ImportError as err:
            logger.warning('No training curves drawn: %s', err)
            return None
        except FileNotFoundError as err:  # a short run without validation
            logger.info('No training curves drawn: %s', err)
            return None
        except Exception as err:
            logger.warning('No training curves drawn: %s: %s', type(err).__name__, err)
            return None
        logger.info('Training curves: %s', path)
        return path
