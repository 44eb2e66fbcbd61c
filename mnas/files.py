"""Writing files so that a reader never sees half of one.

`write_atomic(path, data)` writes through a temporary file in the same folder and renames it
over `path`: an interruption (a killed process, a full disk) leaves either the old file or the
new one, never a truncated one, and no temporary file behind.

Example:

>>> import os, tempfile
>>> from mnas import files
>>> path = files.write_atomic(os.path.join(tempfile.mkdtemp(), "a.json"), '{"x": 1}')
>>> open(path).read()
'{"x": 1}'
"""

import errno
import os
import tempfile

TEMPORARY_PREFIX = ".tmp-"


def write_atomic(path, data):
    """Writes `data` (bytes or str) to `path` through a temporary file in the same folder.

    Args:
        path: The file to write; its folder must exist.
        data: `bytes` or `str` (written as UTF-8).

    Returns:
        `path`, as a string.

    Raises:
        OSError: The file cannot be written (e.g. `errno.ENOSPC` when the disk is full); the
            previous content of `path`, if any, is kept.
    """
    path = os.fspath(path)
    raw = data.encode() if isinstance(data, str) else bytes(data)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=TEMPORARY_PREFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would make the outputs private to their owner.
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def temporary_path(path):
    """A temporary name beside `path`, for writers that take a file name (e.g. `savefig`)."""
    folder, name = os.path.split(os.fspath(path))
    return os.path.join(folder, TEMPORARY_PREFIX + name)


def is_disk_full(error):
    """Whether `error` (an OSError or a TensorFlow error) says that no space is left."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(getattr(error, "message", "") or error)
    return "No space left on device" in text or "Disk quota exceeded" in text
