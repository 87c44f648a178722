"""Robust HTTP downloads and safe archive extraction.

Used by the model store (weight files of ~100-300 MB) and by the dataset preparation
scripts (VOC/SBD/COCO archives of many GB), so a download

* streams into ``<path>.part`` next to the target and resumes it with an HTTP ``Range``
  request after an interruption,
* retries connection errors, timeouts, truncated bodies and 5xx answers with exponential
  backoff, but fails at once on 4xx answers (404, 403, ...),
* verifies the full SHA-1 before the verified file is renamed (``os.replace``) to ``path``,
  so a file at ``path`` is always complete,
* holds ``<path>.lock`` so concurrent processes download a given file only once.
"""
import hashlib
import http.client
import logging
import os
import re
import stat
import tarfile
import time
import zipfile

import requests
import urllib3
from tqdm import tqdm

from .filelock import FileLock

__all__ = ['DownloadError', 'ChecksumError', 'UnsafeArchiveError', 'sha1_file',
           'normalize_sha1', 'download', 'extract_archive']

log = logging.getLogger(__name__)

# Wait before retry n (1-based) is min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (n - 1)) seconds.
# Module constants so tests can shrink them.
BACKOFF_BASE = 1.0
BACKOFF_MAX = 30.0
CHUNK_SIZE = 1 << 20
# (connect, read) seconds; the read timeout bounds the silence between two chunks, not
# the whole transfer.
DEFAULT_TIMEOUT = (10.0, 60.0)
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
    """

    def __init__(self, message, url=None, path=None, status=None):
        super().__init__(message)
        self.url = url
        self.path = path
        self.status = status

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
    """An archive member would be written outside the destination folder."""

    def __init__(self, archive, member, reason):
        super().__init__('Refusing to extract %s: member %r %s; nothing was extracted'
                         % (archive, member, reason))
        self.archive = archive
        self.member = member


class _TransientError(Exception):
    """A failure worth retrying (5xx, truncated body, bad resume)."""


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


def _is_complete(path, sha1):
    return os.path.isfile(path) and (sha1 is None or sha1_file(path) == sha1)


def download(url, path, sha1=None, retries=5, timeout=DEFAULT_TIMEOUT, progress=True,
             session=None, lock_timeout=None):
    """Download ``url`` to ``path``, resuming, retrying and verifying the SHA-1.

    When ``path`` already exists (and matches ``sha1`` when given) nothing is downloaded.
    The bytes go to ``path + '.part'``; an existing ``.part`` is resumed with a ``Range``
    request (kept when the server answers 206, restarted from zero when it answers 200).
    Connection errors, timeouts, truncated bodies and 5xx answers are retried with
    exponential backoff (``BACKOFF_BASE`` seconds, doubled each time); 4xx answers other
    than 408/429 fail at once. When the finished file has the wrong SHA-1 it is deleted
    and downloaded once more from zero. Only a verified file is renamed to ``path``.
    ``path + '.lock'`` is held meanwhile: a second process downloading the same file
    waits, then finds the verified file and returns it.

    Parameters
    ----------
    url : str
    path : str
        Destination file; its folder is created when missing.
    sha1 : str or None
        Expected full SHA-1 (40 hex digits). ``None`` skips verification.
    retries : int
        Retries after the first attempt for transient failures.
    timeout : float or (float, float)
        ``requests`` timeout: seconds to connect and between two received chunks.
    progress : bool
        Show a tqdm progress bar (total from Content-Length) on stderr.
    session : requests.Session or None
        Session to use (e.g. with proxies or auth); a new one otherwise.
    lock_timeout : float or None
        Seconds to wait for another process downloading the same file; ``None`` waits
        as long as it takes.

    Returns
    -------
    str
        The absolute path of the verified file.

    Raises
    ------
    DownloadError
        4xx answer, or retries exhausted; names the URL, the file and the last error.
    ChecksumError
        Still the wrong SHA-1 after one re-download; names the file, expected and actual
        SHA-1. The bad file is deleted.
    ValueError
        ``sha1`` is not a full 40-digit hex digest.
    """
    if sha1 is not None:
        sha1 = normalize_sha1(sha1)
    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if _is_complete(path, sha1):
        return path
    with FileLock(path + '.lock', timeout=lock_timeout):
        if _is_complete(path, sha1):  # another process finished it while we waited
            return path
        if os.path.exists(path):
            log.warning('%s does not have SHA-1 %s; downloading it again from %s',
                        path, sha1, url)
            os.remove(path)
        own_session = session is None
        session = requests.Session() if own_session else session
        part = path + '.part'
        try:
            for attempt in (1, 2):
                _fetch_with_retries(session, url, part, path, retries, timeout, progress)
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


def _fetch_with_retries(session, url, part, path, retries, timeout, progress):
    failures = 0
    while True:
        try:
            _fetch_once(session, url, part, path, timeout, progress)
            return
        except _RETRYABLE as err:
            failures += 1
            if failures > retries:
                raise DownloadError('Failed to download %s to %s after %d attempts: %s'
                                    % (url, path, failures, _describe(err)),
                                    url=url, path=path) from err
            delay = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** (failures - 1))
            log.warning('Downloading %s failed (%s); retry %d of %d in %.1f s',
                        url, _describe(err), failures, retries, delay)
            time.sleep(delay)
        except requests.RequestException as err:  # invalid URL, too many redirects, ...
            raise DownloadError('Cannot download %s to %s: %s' % (url, path, _describe(err)),
                                url=url, path=path) from err


def _describe(err):
    return '%s: %s' % (type(err).__name__, err) if str(err) else type(err).__name__


def _fetch_once(session, url, part, path, timeout, progress):
    """One HTTP request appending to (or restarting) ``part``; raises on any failure."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    # identity: byte counts must match Content-Length and the bytes the SHA-1 is about
    # (servers may otherwise gzip a .tar.gz a second time).
    headers = {'Accept-Encoding': 'identity'}
    if offset:
        headers['Range'] = 'bytes=%d-' % offset
    with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
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
            for chunk in response.raw.stream(CHUNK_SIZE, decode_content=False):
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        # urllib3 2.x already raises on a short body; urllib3 1.x does not by default.
        if expected is not None and received < expected:
            raise _TransientError('transfer truncated after %d of %d bytes'
                                  % (received, expected))


def _content_range_start(header):
    match = re.match(r'\s*bytes\s+(\d+)-', header or '')
    return int(match.group(1)) if match else None


# -- archives -------------------------------------------------------------------------------

_TAR_SUFFIXES = ('.tar', '.tar.gz', '.tgz', '.tar.bz2', '.tbz2', '.tar.xz', '.txz')


def extract_archive(archive, dest_dir):
    """Extract a zip or tar archive, refusing members that would land outside ``dest_dir``.

    Every member is checked before anything is written: absolute names, ``..`` escapes,
    symlinks or hardlinks whose target resolves outside ``dest_dir`` (also through other
    links of the archive or existing symlinks in ``dest_dir``), and device/fifo members
    make the whole archive refused.

    Parameters
    ----------
    archive : str
        A ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` (or ``.tar.bz2``/``.tar.xz``) file; the
        format is sniffed when the suffix is unknown.
    dest_dir : str
        Created when missing.

    Returns
    -------
    list of str
        Paths of the extracted members (files, folders and links), in archive order.

    Raises
    ------
    UnsafeArchiveError
        Names the archive and the offending member; nothing was extracted.
    ValueError
        ``archive`` is neither a zip nor a tar file.
    """
    archive = os.path.abspath(archive)
    dest_dir = os.path.abspath(dest_dir)
    lower = archive.lower()
    if lower.endswith('.zip') or (not lower.endswith(_TAR_SUFFIXES)
                                  and zipfile.is_zipfile(archive)):
        return _extract_zip(archive, dest_dir)
    if lower.endswith(_TAR_SUFFIXES) or tarfile.is_tarfile(archive):
        return _extract_tar(archive, dest_dir)
    raise ValueError('%s is neither a zip nor a tar archive' % archive)


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


def _extract_zip(archive, dest_dir):
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        members = []
        for info in infos:
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                members.append((info.filename, 'symlink',
                                zf.read(info).decode('utf-8', 'replace')))
            else:
                members.append((info.filename, 'dir' if info.is_dir() else 'file', None))
        paths = _check_members(archive, dest_dir, members)
        os.makedirs(dest_dir, exist_ok=True)
        for info in infos:
            zf.extract(info, dest_dir)
    return _unique(paths)


def _extract_tar(archive, dest_dir):
    with tarfile.open(archive, 'r:*') as tf:
        infos = tf.getmembers()
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
        if hasattr(tarfile, 'data_filter'):
            # Second line of defence (Python >= 3.11.4); our own check ran first so that
            # a bad archive extracts nothing.
            tf.extractall(dest_dir, members=infos, filter='data')
        else:
            tf.extractall(dest_dir, members=infos)
    return _unique(paths)


def _unique(paths):
    return list(dict.fromkeys(paths))
