"""An exclusive inter-process file lock.

On POSIX the lock is ``fcntl.flock`` on the lock file: the kernel drops it when the holder
exits or is killed, so a lock file left behind by a dead process never blocks anyone.
Where ``fcntl`` is missing (Windows) the lock is the existence of the lock file, created
with ``O_CREAT | O_EXCL``; a lock file whose pid is dead or that is older than
``stale_after`` seconds is considered abandoned and removed.
"""
import ctypes
import errno
import os
import time

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ['FileLock', 'FileLockTimeout', 'NOT_WRITABLE_ERRNOS']

# errno values of a folder or file system that cannot be written to.
NOT_WRITABLE_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


class FileLockTimeout(TimeoutError):
    """Raised when a :class:`FileLock` cannot be acquired within its timeout."""

    def __init__(self, lock_path, timeout, holder=None):
        self.lock_path = lock_path
        self.timeout = timeout
        self.holder = holder
        who = ' (held by pid %s)' % holder if holder else ''
        super().__init__('Could not acquire the lock file %s within %.1f s%s; if no other '
                         'process is using it, delete the lock file.'
                         % (lock_path, timeout, who))


def _pid_alive(pid):
    """Whether process ``pid`` exists (on this machine)."""
    if pid <= 0:
        return False
    if os.name == 'nt':
        # os.kill(pid, 0) on Windows would *terminate* the process (signal 0 is CTRL_C_EVENT).
        kernel32 = ctypes.windll.kernel32
        process_query_limited_information, still_active, access_denied = 0x1000, 259, 5
        handle = kernel32.OpenProcess(process_query_limited_information, False, pid)
        if not handle:
            return kernel32.GetLastError() == access_denied
        try:
            code = ctypes.c_ulong()
            kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
            return code.value == still_active
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class FileLock:
    """Exclusive lock on ``path``, usable across processes and threads.

    Parameters
    ----------
    path : str
        The lock file (created when missing, removed on release).
    timeout : float or None
        Seconds :meth:`acquire` waits before raising :class:`FileLockTimeout`;
        ``None`` waits forever, ``0`` tries once.
    poll_interval : float
        Seconds between attempts while the lock is held elsewhere.
    stale_after : float
        Only for the lock-file fallback (no ``fcntl``): a lock file older than this many
        seconds is treated as abandoned. Ignored with ``flock``, which needs no such rule.
    use_flock : bool or None
        ``None`` picks ``flock`` when available. ``False`` forces the ``O_EXCL`` fallback
        (used on Windows; selectable for tests).

    Examples
    --------
    >>> with FileLock('/tmp/weights.params.lock', timeout=60):
    ...     pass  # only one process at a time runs this
    """

    def __init__(self, path, timeout=None, poll_interval=0.05, stale_after=3600.0,
                 use_flock=None):
        self.path = os.path.abspath(path)
        self.timeout = timeout
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.use_flock = (fcntl is not None) if use_flock is None else bool(use_flock)
        if self.use_flock and fcntl is None:
            raise ValueError('fcntl.flock is not available on this platform')
        self._fd = None
        self._depth = 0  # re-entrant for the same FileLock object

    @property
    def is_locked(self):
        """Whether this object currently holds the lock."""
        return self._fd is not None

    def acquire(self, timeout=-1):
        """Take the lock, waiting up to ``timeout`` seconds.

        Parameters
        ----------
        timeout : float or None
            Overrides the constructor's timeout when given (``-1`` keeps it).

        Returns
        -------
        FileLock
            ``self``.

        Raises
        ------
        FileLockTimeout
            The lock is still held by someone else when the timeout expires; the message
            names the lock file.
        PermissionError
            The lock file cannot be created (read-only folder or file system); the message
            names it.
        """
        if self._fd is not None:
            self._depth += 1
            return self
        timeout = self.timeout if timeout == -1 else timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        try_once = self._try_flock if self.use_flock else self._try_create
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            while True:
                fd = try_once()
                if fd is not None:
                    self._fd, self._depth = fd, 1
                    return self
                if deadline is not None and time.monotonic() >= deadline:
                    raise FileLockTimeout(self.path, timeout, self._read_holder()[0])
                time.sleep(self.poll_interval)
        except OSError as err:
            if err.errno not in NOT_WRITABLE_ERRNOS:
                raise
            raise PermissionError(err.errno, 'Cannot create the lock file %s (%s): its folder '
                                  'must be writable' % (self.path, err.strerror)) from None

    def release(self):
        """Release the lock (a no-op when not held)."""
        if self._fd is None:
            return
        self._depth -= 1
        if self._depth > 0:
            return
        fd, self._fd = self._fd, None
        if not self.use_flock:
            # Windows cannot delete a file that is still open.
            os.close(fd)
            _unlink_quietly(self.path)
            return
        try:
            # Unlink while still holding the lock: a waiter that opened the old file notices
            # the inode change in _try_flock and retries on the new file.
            _unlink_quietly(self.path)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()

    def __del__(self):
        if getattr(self, '_fd', None) is not None:
            self._depth = 1
            self.release()

    def __repr__(self):
        return '%s(%r, locked=%s)' % (type(self).__name__, self.path, self.is_locked)

    # -- POSIX: flock -----------------------------------------------------------------------
    def _try_flock(self):
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return None
            raise
        try:
            same_file = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except FileNotFoundError:
            same_file = False
        if not same_file:  # the previous holder removed this file while we waited
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            return None
        _write_owner(fd)
        return fd

    # -- fallback: O_CREAT | O_EXCL -----------------------------------------------------------
    def _try_create(self):
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            self._remove_if_stale()
            return None
        _write_owner(fd)
        return fd

    def _read_holder(self):
        """(pid, text) of the current lock file, (None, None) when unreadable."""
        try:
            with open(self.path) as f:
                text = f.read()
        except OSError:
            return None, None
        try:
            return int(text.split()[0]), text
        except (ValueError, IndexError):
            return None, text

    def _remove_if_stale(self):
        pid, text = self._read_holder()
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return
        if text is None:
            return
        dead = pid is not None and not _pid_alive(pid)
        # A lock file with no pid yet may be seconds old (holder between create and write).
        if dead or age > self.stale_after:
            _, text_now = self._read_holder()
            if text_now == text:  # not replaced by a fresh holder meanwhile
                _unlink_quietly(self.path)


def _write_owner(fd):
    """Record the holder's pid in the lock file (diagnostics and stale detection)."""
    os.ftruncate(fd, 0)
    os.write(fd, ('%d %f\n' % (os.getpid(), time.time())).encode())


def _unlink_quietly(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
