"""Robust HTTP downloads and safe archive extraction.

Used by the model store (weight files of ~100-300 MB) and by the dataset preparation
scripts (VOC/SBD/COCO archives of many GB), so a download

* streams into ``<path>.part`` next to the target and resumes it with an HTTP ``Range``
  request after an interruption,
* retries timeouts, dropped connections, truncated bodies and 5xx answers with exponential
  backoff, but fails at once on 4xx answers (404, 403, ...), on a host name that does not
  resolve and on a refused connection (a retry helps a flaky server, not a missing network),
* is bounded in time: an attempt slower than :data:`MIN_SPEED` is cut, one attempt lasts at
  most ``$GLUONSEG_DOWNLOAD_ATTEMPT_TIMEOUT`` seconds and the whole download (retries and
  waits included) at most ``$GLUONSEG_DOWNLOAD_DEADLINE`` seconds,
* verifies the full SHA-1 before the verified file is renamed (``os.replace``) to ``path``,
  so a file at ``path`` is always complete,
* holds ``<path>.lock`` so concurrent processes download a given file only once.

Extraction refuses members that would land outside the destination and archives that would
expand beyond ``$GLUONSEG_EXTRACT_MAX_SIZE`` bytes or by more than a compression ratio
(a zip bomb), before writing anything.
"""
import gzip
import hashlib
import http.client
import logging
import lzma
import os
import re
import socket
import stat
import tarfile
import time
import zipfile
import zlib
from urllib.parse import urlsplit

import requests
import urllib3
from tqdm import tqdm

from .filelock import FileLock

__all__ = ['DownloadError', 'ChecksumError', 'UnsafeArchiveError', 'ArchiveTooLargeError',
           'CorruptArchiveError', 'sha1_file', 'normalize_sha1', 'reject_file', 'download',
           'extract_archive', 'ATTEMPT_TIMEOUT_ENV', 'DEADLINE_ENV', 'EXTRACT_MAX_SIZE_ENV']

log = logging.getLogger(__name__)

# Wait before retry n (1-based) is min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (n - 1)) seconds.
# Module constants so tests can shrink them.
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
CHUNK_SIZE = 1 << 20
# (connect, read) seconds; the read timeout bounds the silence between two received
# pieces, not the whole transfer (the attempt timeout and the deadline do that).
DEFAULT_TIMEOUT = (10.0, 30.0)
# Wall-clock bounds in seconds, set by these environment variables. One attempt of 10 min
# fetches a 300 MB weight file at 0.5 MB/s; a longer download is resumed by the next
# attempt. 6 h lets COCO's 18 GB train2017.zip through at 0.9 MB/s.
ATTEMPT_TIMEOUT_ENV = 'GLUONSEG_DOWNLOAD_ATTEMPT_TIMEOUT'
DEADLINE_ENV = 'GLUONSEG_DOWNLOAD_DEADLINE'
DEFAULT_ATTEMPT_TIMEOUT = 600.0
DEFAULT_DEADLINE = 6 * 3600.0
# An attempt that receives less than MIN_SPEED bytes/s over SPEED_WINDOW seconds is cut: a
# server trickling a byte every few seconds never trips the read timeout.
MIN_SPEED = 1024
SPEED_WINDOW = 60.0
# 4xx answers that mean "try again later" rather than "this will never work".
_RETRYABLE_4XX = (408, 429)
_SHA1_RE = re.compile(r'^[0-9a-fA-F]{40}$')


class DownloadError(IOError):
    """A file could not be downloaded; the message names the URL and the file.

    Attributes
    ----------
    url : str or None
    path : str or None
        The destination file.
    status : int or None
        The HTTP status when the server answered with an error.
    cause : BaseException or None
        The error of the last attempt (kept here rather than chained, so a traceback shows
        one message).
    """

    def __init__(self, message, url=None, path=None, status=None, cause=None):
        super().__init__(message)
        self.url = url
        self.path = path
        self.status = status
        self.cause = cause

    def __str__(self):
        return self.args[0]


class ChecksumError(DownloadError):
    """A downloaded file does not have the expected SHA-1 (even after one re-download)."""

    def __init__(self, path, expected, actual, url=None, detail=''):
        message = ('SHA-1 mismatch for %s%s: expected %s, got %s%s'
                   % (path, ' downloaded from %s' % url if url else '', expected, actual,
                      detail))
        super().__init__(message, url=url, path=path)
        self.expected = expected
        self.actual = actual


class UnsafeArchiveError(ValueError):
    """An archive is refused: a member would be written outside the destination folder, or
    (:class:`ArchiveTooLargeError`) the archive would expand too much."""

    def __init__(self, archive, member, reason):
        subject = 'member %r %s' % (member, reason) if member is not None else reason
        super().__init__('Refusing to extract %s: %s; nothing was extracted'
                         % (archive, subject))
        self.archive = archive
        self.member = member


class ArchiveTooLargeError(UnsafeArchiveError):
    """An archive declares more bytes than the size bound, or expands by more than the
    compression-ratio bound (a zip or tar bomb). ``member`` is None when the total is."""


class CorruptArchiveError(ValueError):
    """An archive cannot be read (bad CRC, truncated or garbled data)."""

    def __init__(self, archive, member, err):
        where = ' at member %r' % member if member is not None else ''
        super().__init__('%s is corrupt%s (%s: %s)' % (archive, where, type(err).__name__, err))
        self.archive = archive
        self.member = member


class _TransientError(Exception):
    """A failure worth retrying (5xx, truncated body, bad resume, too slow)."""


class _AttemptTimeout(_TransientError):
    """An attempt reached its time limit."""


# Errors raised while connecting or reading the body that a retry can cure. Not OSError
# as a whole: a full disk is not cured by retrying.
_RETRYABLE = (_TransientError, requests.ConnectionError, requests.Timeout,
              requests.exceptions.ChunkedEncodingError, urllib3.exceptions.HTTPError,
              http.client.HTTPException, ConnectionError, TimeoutError)


def sha1_file(path, chunk=1 << 20):
    """SHA-1 of a file, read in chunks.

    Parameters
    ----------
    path : str
    chunk : int
        Bytes read at a time.

    Returns
    -------
    str
        The full 40-digit lowercase hex digest.
    """
    digest = hashlib.sha1()
    with open(path, 'rb') as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            digest.update(block)
    return digest.hexdigest()


def normalize_sha1(sha1):
    """Check that ``sha1`` is a full SHA-1 hex digest and return it in lowercase.

    Parameters
    ----------
    sha1 : str

    Returns
    -------
    str

    Raises
    ------
    ValueError
        ``sha1`` is not 40 hex digits (a short prefix is refused: only full hashes are
        compared).
    """
    if not isinstance(sha1, str) or not _SHA1_RE.match(sha1):
        raise ValueError('Expected a full SHA-1 (40 hex digits), got %r' % (sha1,))
    return sha1.lower()


def reject_file(path):
    """Move a file that failed verification to ``path + '.rejected'`` and return that path.

    The file may be the user's only copy (placed by hand), so it is set aside rather than
    deleted; an older ``.rejected`` file of the same name is replaced.
    """
    rejected = path + '.rejected'
    os.replace(path, rejected)
    return rejected


def _seconds_from_env(var, default):
    value = os.environ.get(var, '').strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = float('nan')
    if not seconds > 0:  # also refuses nan
        raise ValueError('%s=%r: expected a positive number of seconds (inf: no limit)'
                         % (var, value))
    return seconds


def _is_complete(path, sha1):
    return os.path.isfile(path) and (sha1 is None or sha1_file(path) == sha1)


def download(url, path, sha1=None, retries=5, timeout=DEFAULT_TIMEOUT, progress=True,
             session=None, lock_timeout=None, attempt_timeout=None, deadline=None):
    """Download ``url`` to ``path``, resuming, retrying and verifying the SHA-1.

    When ``path`` already exists (and matches ``sha1`` when given) nothing is downloaded; a
    file there with another SHA-1 is moved to ``path + '.rejected'`` (see
    :func:`reject_file`). The bytes go to ``path + '.part'``; an existing ``.part`` is
    resumed with a ``Range`` request (kept when the server answers 206, restarted from zero
    when it answers 200).

    Timeouts, dropped connections, truncated bodies, 5xx answers and attempts slower than
    :data:`MIN_SPEED` bytes/s (over :data:`SPEED_WINDOW` seconds) are retried with
    exponential backoff (``BACKOFF_BASE`` seconds, doubled each time), each retry resuming
    the ``.part``. 4xx answers other than 408/429, a host name that does not resolve and a
    refused connection fail at once. An attempt that reaches ``attempt_timeout`` is
    resumed by the next one; it counts as a failure only when it did not make the
    ``.part`` longer than before. No attempt starts or runs past ``deadline``; the ``.part``
    is kept, so calling again resumes it. When the finished file has the wrong SHA-1 it is
    deleted and downloaded once more from zero. Only a verified file is renamed to
    ``path``. ``path + '.lock'`` is held meanwhile: a second process downloading the same
    file waits, then finds the verified file and returns it.

    Parameters
    ----------
    url : str
    path : str
        Destination file; its folder is created when missing.
    sha1 : str or None
        Expected full SHA-1 (40 hex digits). ``None`` skips verification.
    retries : int
        Retries after the first attempt for failures worth retrying.
    timeout : float or (float, float)
        ``requests`` timeout: seconds to connect and of silence between two received pieces.
    progress : bool
        Show a tqdm progress bar (total from Content-Length) on stderr.
    session : requests.Session or None
        Session to use (e.g. with proxies or auth); a new one otherwise.
    lock_timeout : float or None
        Seconds to wait for another process downloading the same file; ``None`` waits
        as long as it takes.
    attempt_timeout : float or None
        Seconds one attempt (one HTTP request, connection to last byte) may last. ``None``:
        ``$GLUONSEG_DOWNLOAD_ATTEMPT_TIMEOUT``, else :data:`DEFAULT_ATTEMPT_TIMEOUT`.
    deadline : float or None
        Seconds the whole download may last once the lock is held (attempts, waits between
        them, the re-download after a bad SHA-1). ``None``: ``$GLUONSEG_DOWNLOAD_DEADLINE``,
        else :data:`DEFAULT_DEADLINE`.

    Returns
    -------
    str
        The absolute path of the verified file.

    Raises
    ------
    DownloadError
        4xx answer, unresolvable host, refused connection, retries exhausted or deadline
        passed: one message naming the URL, the file, the number of attempts, the last
        error and the bytes kept in the ``.part``.
    ChecksumError
        Still the wrong SHA-1 after one re-download; names the file, expected and actual
        SHA-1. The bad file is deleted.
    ValueError
        ``sha1`` is not a full 40-digit hex digest, or a time limit is not positive.
    """
    if sha1 is not None:
        sha1 = normalize_sha1(sha1)
    limits = _Limits(attempt_timeout, deadline)
    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if _is_complete(path, sha1):
        return path
    with FileLock(path + '.lock', timeout=lock_timeout):
        if _is_complete(path, sha1):  # another process finished it while we waited
            return path
        limits.start()
        if os.path.exists(path):
            log.warning('%s does not have SHA-1 %s; moved it to %s and downloading it again '
                        'from %s', path, sha1, reject_file(path), url)
        own_session = session is None
        session = requests.Session() if own_session else session
        part = path + '.part'
        try:
            for attempt in (1, 2):
                _fetch_with_retries(session, url, part, path, retries, timeout, progress,
                                    limits)
                if sha1 is None:
                    break
                actual = sha1_file(part)
                if actual == sha1:
                    break
                os.remove(part)
                if attempt == 2:
                    raise ChecksumError(path, sha1, actual, url,
                                        ' (downloaded twice; the file was deleted)')
                log.warning('SHA-1 mismatch for %s from %s (expected %s, got %s); '
                            'downloading it again from zero', path, url, sha1, actual)
            os.replace(part, path)
        finally:
            if own_session:
                session.close()
    return path


class _Limits:
    """The attempt timeout and the overall deadline of one :func:`download` call."""

    def __init__(self, attempt_timeout, deadline):
        self.attempt_timeout = (_seconds_from_env(ATTEMPT_TIMEOUT_ENV, DEFAULT_ATTEMPT_TIMEOUT)
                                if attempt_timeout is None else float(attempt_timeout))
        self.deadline = (_seconds_from_env(DEADLINE_ENV, DEFAULT_DEADLINE)
                         if deadline is None else float(deadline))
        if not (self.attempt_timeout > 0 and self.deadline > 0):
            raise ValueError('attempt_timeout and deadline must be positive seconds, got %r '
                             'and %r' % (attempt_timeout, deadline))
        self.started = None

    def start(self):
        self.started = time.monotonic()

    def elapsed(self):
        return time.monotonic() - self.started

    def left(self):
        return self.deadline - self.elapsed()

    def attempt_end(self):
        """(monotonic time an attempt starting now must end, what sets it)."""
        now = time.monotonic()
        if now + self.attempt_timeout < self.started + self.deadline:
            return now + self.attempt_timeout, 'the attempt timeout of %s (%s)' % (
                _duration(self.attempt_timeout), ATTEMPT_TIMEOUT_ENV)
        return self.started + self.deadline, self.deadline_text()

    def deadline_text(self):
        return 'the deadline of %s (%s)' % (_duration(self.deadline), DEADLINE_ENV)


def _fetch_with_retries(session, url, part, path, retries, timeout, progress, limits):
    failures, attempts, longest = 0, 0, _size(part)
    while True:
        attempts += 1
        try:
            _fetch_once(session, url, part, path, timeout, progress, limits)
            return
        except _RETRYABLE as err:
            reason = _unreachable(err, url)
            if reason:
                raise DownloadError('Cannot download %s to %s: %s' % (url, path, reason),
                                    url=url, path=path, cause=err) from None
            size = _size(part)
            # A cut attempt that lengthened the .part is going well: carry on at once.
            progressing = isinstance(err, _AttemptTimeout) and size > longest
            longest = max(longest, size)
            if not progressing:
                failures += 1
            delay = 0.0 if progressing else min(BACKOFF_MAX,
                                                BACKOFF_BASE * 2 ** (failures - 1))
            out_of_time = limits.left() <= delay
            if failures > retries or out_of_time:
                limit = (limits.deadline_text() if out_of_time
                         else '%d retries' % retries)
                kept = ('; %s bytes are kept in %s, calling again resumes them'
                        % (format(size, ','), part) if size else '')
                raise DownloadError('Failed to download %s to %s: gave up after %d attempts '
                                    'in %s (%s); the last one: %s%s'
                                    % (url, path, attempts, _duration(limits.elapsed()),
                                       limit, _describe(err), kept),
                                    url=url, path=path, cause=err) from None
            log.warning('Downloading %s: %s; %s', os.path.basename(path), _describe(err),
                        'resuming' if progressing else 'retry %d of %d in %.1f s'
                        % (failures, retries, delay))
            time.sleep(delay)
        except requests.RequestException as err:  # invalid URL, too many redirects, ...
            raise DownloadError('Cannot download %s to %s: %s' % (url, path, _describe(err)),
                                url=url, path=path, cause=err) from None


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _causes(err):
    """``err`` and the errors it wraps (``reason``, ``__cause__``, ``__context__``, args)."""
    found, pending = [], [err]
    while pending:
        current = pending.pop(0)
        if any(current is seen for seen in found):
            continue
        found.append(current)
        for inner in (getattr(current, 'reason', None), current.__cause__,
                      current.__context__, *current.args):
            if isinstance(inner, BaseException):
                pending.append(inner)
    return found


def _unreachable(err, url):
    """Why the host cannot be reached at all (no retry helps), or None."""
    proxy = isinstance(err, requests.exceptions.ProxyError)
    for cause in _causes(err):
        if isinstance(cause, socket.gaierror):
            return ('%s does not resolve (%s): this machine is offline or the address is wrong'
                    % ("the proxy's host name" if proxy else
                       'the host name %r' % urlsplit(url).hostname, cause.strerror or cause))
        if isinstance(cause, ConnectionRefusedError):
            return ('%s refused the connection: nothing listens there, or this machine is '
                    'offline' % ('the proxy' if proxy else urlsplit(url).netloc))
    return None


def _describe(err):
    """A short account of a failed attempt (requests' own messages run to 400 characters)."""
    if isinstance(err, _TransientError):
        return str(err)
    causes = _causes(err)
    if any(isinstance(c, (requests.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError))
           for c in causes):
        return 'connecting timed out'
    if any(isinstance(c, (requests.ReadTimeout, urllib3.exceptions.ReadTimeoutError))
           for c in causes):
        return 'the server sent nothing within the read timeout'
    innermost = causes[-1]
    text = str(innermost)
    text = '%s: %s' % (type(innermost).__name__, text) if text else type(innermost).__name__
    return text if len(text) <= 200 else text[:197] + '...'


def _duration(seconds):
    if seconds < 120:
        return '%.3g s' % seconds
    if seconds < 7200:
        return '%.3g min' % (seconds / 60)
    return '%.3g h' % (seconds / 3600)


def _fetch_once(session, url, part, path, timeout, progress, limits):
    """One HTTP request appending to (or restarting) ``part``; raises on any failure."""
    end, end_reason = limits.attempt_end()
    offset = _size(part)
    # identity: byte counts must match Content-Length and the bytes the SHA-1 is about
    # (servers may otherwise gzip a .tar.gz a second time).
    headers = {'Accept-Encoding': 'identity'}
    if offset:
        headers['Range'] = 'bytes=%d-' % offset
    # No socket wait may outlast the attempt.
    left = max(end - time.monotonic(), 0.001)
    timeouts = tuple(timeout) if isinstance(timeout, (tuple, list)) else (timeout, timeout)
    timeouts = tuple(left if t is None else min(t, left) for t in timeouts)
    with session.get(url, headers=headers, stream=True, timeout=timeouts) as response:
        status = response.status_code
        if status == 416 and offset:
            # The .part is as long as the whole file or longer: it cannot be resumed.
            os.remove(part)
            raise _TransientError('HTTP 416 when resuming at byte %d; restarting from zero'
                                  % offset)
        if 400 <= status < 500 and status not in _RETRYABLE_4XX:
            raise DownloadError('HTTP %d %s for %s (downloading to %s)'
                                % (status, response.reason, url, path),
                                url=url, path=path, status=status)
        if status >= 400:
            raise _TransientError('HTTP %d %s' % (status, response.reason))
        if status == 206:
            start = _content_range_start(response.headers.get('Content-Range'))
            if start != offset:
                os.remove(part)
                raise _TransientError('server resumed at byte %s instead of %d'
                                      % (start, offset))
            mode = 'ab'
        elif status == 200:
            offset, mode = 0, 'wb'  # no .part, or the server ignores Range: from zero
        else:
            raise DownloadError('Unexpected HTTP %d %s for %s (downloading to %s)'
                                % (status, response.reason, url, path),
                                url=url, path=path, status=status)
        length = response.headers.get('Content-Length', '')
        expected = int(length) if length.isdigit() else None
        received = 0
        with open(part, mode) as f, tqdm(
                total=None if expected is None else offset + expected, initial=offset,
                unit='B', unit_scale=True, unit_divisor=1024,
                desc=os.path.basename(path), disable=not progress) as bar:
            window_start, window_bytes = time.monotonic(), 0
            for chunk in _pieces(response.raw):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
                now = time.monotonic()
                if now >= end:
                    raise _AttemptTimeout('stopped by %s after %s of %s bytes'
                                          % (end_reason, format(offset + received, ','),
                                             '?' if expected is None
                                             else format(offset + expected, ',')))
                if now - window_start >= SPEED_WINDOW:
                    speed = (received - window_bytes) / (now - window_start)
                    if speed < MIN_SPEED:
                        raise _TransientError('too slow: %.0f bytes/s over %s, below %d'
                                              % (speed, _duration(now - window_start),
                                                 MIN_SPEED))
                    window_start, window_bytes = now, received
        # urllib3 2.x already raises on a short body; urllib3 1.x does not by default.
        if expected is not None and received < expected:
            raise _TransientError('transfer truncated after %d of %d bytes'
                                  % (received, expected))


def _pieces(raw):
    """The body as it arrives: each piece is what one socket read returned, so the time
    limits are checked even when a server sends a byte at a time."""
    read1 = getattr(raw, 'read1', None)  # urllib3 >= 2.3
    if read1 is None:
        yield from raw.stream(CHUNK_SIZE, decode_content=False)
        return
    while True:
        piece = read1(CHUNK_SIZE, decode_content=False)
        if not piece:
            return
        yield piece


def _content_range_start(header):
    match = re.match(r'\s*bytes\s+(\d+)-', header or '')
    return int(match.group(1)) if match else None


# -- archives -------------------------------------------------------------------------------

_TAR_SUFFIXES = ('.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tbz2', '.tar.xz', '.txz')
EXTRACT_MAX_SIZE_ENV = 'GLUONSEG_EXTRACT_MAX_SIZE'
# Bytes; COCO's train2017.zip, the largest archive gluonseg prepares, expands to 18 GB.
DEFAULT_EXTRACT_MAX_SIZE = 32 << 30
# Images and weights barely compress and COCO's JSON about 5x; zeros compress ~1000x.
DEFAULT_MAX_RATIO = 100
# Smaller members are not held to the ratio (a few KB of text may compress far).
_RATIO_MIN_SIZE = 1 << 20
# What a damaged archive raises while it is read. Not OSError as a whole: a full disk is not
# a damaged archive.
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, tarfile.ReadError,
            tarfile.CompressionError, gzip.BadGzipFile, lzma.LZMAError)
_SIZE_SUFFIXES = {'': 1, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40}


def extract_archive(archive, dest_dir, max_size=None, max_ratio=DEFAULT_MAX_RATIO):
    """Extract a zip or tar archive, refusing members that would land outside ``dest_dir``
    and archives that would expand too much.

    Every member is checked before anything is written: absolute names, ``..`` escapes,
    symlinks or hardlinks whose target resolves outside ``dest_dir`` (also through other
    links of the archive or existing symlinks in ``dest_dir``), and device/fifo members
    make the whole archive refused; so do a member or a total declared size above
    ``max_size``, and a zip member (or a whole tar archive) of at least 1 MiB that expands
    more than ``max_ratio`` times.

    Parameters
    ----------
    archive : str
        A ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` (or ``.tar.bz2``/``.tar.xz``) file; the
        format is sniffed when the suffix is unknown.
    dest_dir : str
        Created when missing.
    max_size : int or None
        Bytes the members may take in all. ``None``: ``$GLUONSEG_EXTRACT_MAX_SIZE`` (bytes,
        or with a K/M/G/T suffix), else :data:`DEFAULT_EXTRACT_MAX_SIZE` (32 GiB).
    max_ratio : float
        Largest expansion (extracted / compressed bytes) allowed.

    Returns
    -------
    list of str
        Paths of the extracted members (files, folders and links), in archive order.

    Raises
    ------
    UnsafeArchiveError
        Names the archive and the offending member; nothing was extracted.
    ArchiveTooLargeError
        (an :class:`UnsafeArchiveError`) names the member or the total, its size and the
        bound; nothing was extracted.
    CorruptArchiveError
        The archive cannot be read (names the member being extracted); the members
        extracted before it stay in ``dest_dir``.
    ValueError
        ``archive`` is neither a zip nor a tar file, or ``$GLUONSEG_EXTRACT_MAX_SIZE`` is
        not a size.
    """
    archive = os.path.abspath(archive)
    dest_dir = os.path.abspath(dest_dir)
    size_source = 'max_size' if max_size is not None else EXTRACT_MAX_SIZE_ENV
    if max_size is None:
        max_size = _bytes_from_env(EXTRACT_MAX_SIZE_ENV, DEFAULT_EXTRACT_MAX_SIZE)
    lower = archive.lower()
    if lower.endswith('.zip') or (not lower.endswith(_TAR_SUFFIXES)
                                  and zipfile.is_zipfile(archive)):
        extract = _extract_zip
    elif lower.endswith(_TAR_SUFFIXES) or tarfile.is_tarfile(archive):
        extract = _extract_tar
    else:
        raise ValueError('%s is neither a zip nor a tar archive' % archive)
    progress = {'member': None}  # the member being read, for the error message
    try:
        return extract(archive, dest_dir, _SizeBound(archive, max_size, size_source, max_ratio),
                       progress)
    except _CORRUPT as err:
        raise CorruptArchiveError(archive, progress['member'], err) from None


def _bytes_from_env(var, default):
    value = os.environ.get(var, '').strip()
    if not value:
        return default
    match = re.fullmatch(r'(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?', value, re.IGNORECASE)
    if not match:
        raise ValueError('%s=%r: expected a number of bytes, optionally with a K, M, G or T '
                         'suffix (e.g. 500M)' % (var, value))
    return int(float(match.group(1)) * _SIZE_SUFFIXES[match.group(2).upper()])


def _size_text(size):
    for unit, factor in (('TiB', 1 << 40), ('GiB', 1 << 30), ('MiB', 1 << 20),
                         ('KiB', 1 << 10)):
        if size >= factor:
            return '%.1f %s (%s bytes)' % (size / factor, unit, format(size, ','))
    return '%s bytes' % format(size, ',')


class _SizeBound:
    """The size and ratio bounds of one extraction."""

    def __init__(self, archive, max_size, size_source, max_ratio):
        self.archive, self.max_size, self.max_ratio = archive, max_size, max_ratio
        self.limit = 'the limit of %s (%s)' % (_size_text(max_size), size_source)

    def check(self, members, packed_total=None):
        """Refuse ``members`` = [(name, size, packed size or None)] that expand too much;
        ``packed_total`` (tar) holds the whole archive to the ratio."""
        total = 0
        for name, size, packed in members:
            if size > self.max_size:
                raise ArchiveTooLargeError(self.archive, name, 'would expand to %s, more than %s'
                                           % (_size_text(size), self.limit))
            if packed is not None:
                self._check_ratio(name, size, packed)
            total += size
        if total > self.max_size:
            raise ArchiveTooLargeError(
                self.archive, None, 'its %d members would expand to %s in all, more than %s'
                % (len(members), _size_text(total), self.limit))
        if packed_total is not None:
            self._check_ratio(None, total, packed_total)

    def _check_ratio(self, name, size, packed):
        if size < _RATIO_MIN_SIZE or size <= self.max_ratio * max(packed, 1):
            return
        raise ArchiveTooLargeError(
            self.archive, name, '%swould expand %.0f times (%s from %s), more than the limit '
            'of %g times (a zip or tar bomb?)'
            % ('' if name is not None else 'its members ', size / max(packed, 1),
               _size_text(size), _size_text(packed), self.max_ratio))


def _name_parts(archive, name):
    """Components of a member name relative to the destination; absolute names refused."""
    if name.startswith(('/', '\\')) or re.match(r'^[A-Za-z]:', name) or os.path.isabs(name):
        raise UnsafeArchiveError(archive, name, 'has an absolute path')
    # Backslashes count as separators too: '..\\x' escapes when extracted on Windows.
    return [p for p in re.split(r'[\\/]', name) if p not in ('', '.')]


def _resolve(parts, links, follow_last):
    """Resolve components through the archive's symlinks (``links``: path -> target).

    Returns the resolved components relative to the destination, or None when the path
    escapes it (or loops).
    """
    resolved, pending, hops = [], list(parts), 0
    while pending:
        part = pending.pop(0)
        if part in ('', '.'):
            continue
        if part == '..':
            if not resolved:
                return None
            resolved.pop()
            continue
        key = '/'.join(resolved + [part])
        if key in links and (pending or follow_last):
            hops += 1
            target = links[key]
            if hops > 40 or target.startswith(('/', '\\')) or re.match(r'^[A-Za-z]:', target):
                return None
            pending = re.split(r'[\\/]', target) + pending
            continue
        resolved.append(part)
    return resolved


def _check_members(archive, dest_dir, members):
    """Validate ``members`` = [(name, kind, link_target)]; return their destination paths.

    ``kind`` is 'file', 'dir', 'symlink', 'hardlink' or 'special'.
    """
    real_dest = os.path.realpath(dest_dir)
    links = {}
    for name, kind, target in members:
        if kind == 'symlink':
            links['/'.join(_name_parts(archive, name))] = target
    paths = []
    for name, kind, target in members:
        parts = _name_parts(archive, name)
        if kind == 'special':
            raise UnsafeArchiveError(archive, name, 'is a device or fifo')
        resolved = _resolve(parts, links, follow_last=False)
        if resolved is None:
            raise UnsafeArchiveError(archive, name, 'resolves outside %s' % dest_dir)
        if kind in ('symlink', 'hardlink'):
            if target.startswith(('/', '\\')) or re.match(r'^[A-Za-z]:', target):
                raise UnsafeArchiveError(archive, name,
                                         'links to the absolute path %r' % target)
            # Symlink targets are relative to the link's folder, hardlink targets to the
            # archive root.
            base = parts[:-1] if kind == 'symlink' else []
            link_parts = base + re.split(r'[\\/]', target)
            if _resolve(link_parts, links, follow_last=True) is None:
                raise UnsafeArchiveError(archive, name,
                                         'links to %r, outside %s' % (target, dest_dir))
        # Existing symlinks inside dest_dir could still redirect the write.
        real = os.path.realpath(os.path.join(real_dest, *resolved))
        if real != real_dest and not real.startswith(real_dest + os.sep):
            raise UnsafeArchiveError(archive, name, 'resolves to %s, outside %s'
                                     % (real, dest_dir))
        paths.append(os.path.join(dest_dir, *parts))
    return paths


def _extract_zip(archive, dest_dir, bound, progress):
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        # Before anything is read: a symlink member's target is read into memory.
        bound.check([(info.filename, info.file_size, info.compress_size) for info in infos])
        members = []
        for info in infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                progress['member'] = info.filename
                members.append((info.filename, 'symlink',
                                zf.read(info).decode('utf-8', 'replace')))
            else:
                members.append((info.filename, 'dir' if info.is_dir() else 'file', None))
        paths = _check_members(archive, dest_dir, members)
        os.makedirs(dest_dir, exist_ok=True)
        for info in infos:
            progress['member'] = info.filename
            zf.extract(info, dest_dir)
    return _unique(paths)


def _extract_tar(archive, dest_dir, bound, progress):
    with tarfile.open(archive, 'r:*') as tf:
        infos = tf.getmembers()
        bound.check([(info.name, info.size, None) for info in infos if info.isreg()],
                    packed_total=os.path.getsize(archive))
        members = []
        for info in infos:
            if info.issym():
                kind = 'symlink'
            elif info.islnk():
                kind = 'hardlink'
            elif info.isdir():
                kind = 'dir'
            elif info.isreg():
                kind = 'file'
            else:
                kind = 'special'
            members.append((info.name, kind, info.linkname))
        paths = _check_members(archive, dest_dir, members)
        os.makedirs(dest_dir, exist_ok=True)

        def tracked():
            for info in infos:
                progress['member'] = info.name
                yield info
        if hasattr(tarfile, 'data_filter'):
            # Second line of defence (Python >= 3.11.4); our own check ran first so that a
            # bad archive extracts nothing.
            tf.extractall(dest_dir, members=tracked(), filter='data')
        else:
            tf.extractall(dest_dir, members=tracked())
    return _unique(paths)


def _unique(paths):
    return list(dict.fromkeys(paths))
