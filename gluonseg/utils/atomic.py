"""Files written whole or not at all: write a temporary file beside the target, flush it to
disk, then rename it over the target (readers see the old file or the complete new one).

Used for checkpoints, weight-cache copies, prediction PNGs and result JSON files.
"""
import os
import shutil
import tempfile

__all__ = ['remove_quietly', 'temp_path_beside', 'publish', 'write_atomically', 'atomic_copy']


def remove_quietly(path):
    """Remove ``path`` if it exists."""
    try:
        os.remove(path)
    except OSError:
        pass


def temp_path_beside(path):
    """A new empty temporary file in ``path``'s folder (created if needed), with the
    permissions of a normal new file."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix='.%s.' % os.path.basename(path), suffix='.tmp',
                               dir=folder)
    os.close(fd)
    # mkstemp makes the file private (0600); give it the permissions of a normal new file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def _fsync_dir(folder):
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on some platforms; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def publish(tmp, path):
    """fsync ``tmp`` and move it over ``path`` in one step."""
    with open(tmp, 'rb') as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def write_atomically(path, write, binary=True):
    """Call ``write(file)`` on a temporary file beside ``path`` (opened in binary or text
    mode), then publish it as ``path``; on any error ``path`` is untouched. Returns ``path``."""
    tmp = temp_path_beside(path)
    try:
        with open(tmp, 'wb' if binary else 'w') as f:
            write(f)
        publish(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    return path


def atomic_copy(src, dst):
    """Make ``dst`` a copy of ``src`` atomically (hard link when possible, else a copy)."""
    tmp = temp_path_beside(dst)
    try:
        os.remove(tmp)
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
        publish(tmp, dst)
    except BaseException:
        remove_quietly(tmp)
        raise
    return dst
