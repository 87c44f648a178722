"""Preload the CUDA 11 libraries of the ``nvidia-*-cu11`` wheels for a CUDA build of MXNet.

``libmxnet.so`` of ``mxnet-cu112`` links against ``libcudart.so.11.0``, ``libcublas.so.11``,
``libcudnn.so.8``, ``libnccl.so.2`` ... by soname. The ``nvidia-*-cu11`` wheels (installed by
``pip install gluonseg[cu112]``) ship these libraries under ``site-packages/nvidia/<name>/lib/``,
a folder the dynamic loader never searches. Loading them first with ``RTLD_GLOBAL`` makes the
loader find them by soname when ``import mxnet`` opens ``libmxnet.so``, so no system CUDA 11
toolkit and no ``LD_LIBRARY_PATH`` are needed.

Rules
-----
* Runs only on Linux, only when the installed MXNet is a CUDA build, and not at all when the
  environment variable ``GLUONSEG_SKIP_CUDA_PRELOAD`` is ``1`` (or ``true``/``yes``/``on``).
* A CUDA build is recognised without importing mxnet: the ``libmxnet.so`` that mxnet would load
  (``$MXNET_LIBRARY_PATH`` or the one inside the mxnet package) lists ``libcudart.so.*`` among
  its ELF ``NEEDED`` entries. If that file cannot be read, an installed distribution named
  ``mxnet-cu<NN>`` decides instead.
* The system copy wins: for each wheel, its main library is first opened by soname. If the
  dynamic loader resolves it (``LD_LIBRARY_PATH``, ``ld.so.cache``, or already loaded), that
  copy is used and nothing of that wheel is loaded. Otherwise every library of the wheel is
  loaded from the first search root holding it, dependencies first. A whole wheel is decided at
  once so that companion libraries (cuDNN's ``libcudnn_*_infer``, ``libcublasLt``) always come
  from the same release as the main library.
* Search roots are ``site.getsitepackages()``, ``site.getusersitepackages()`` and ``sys.path``,
  in that order; the first root that has a file wins.
* Nothing here raises: the outcome is recorded in :data:`preload_report`, which
  ``python -m gluonseg.env`` prints.

This module must not import mxnet: it runs before mxnet is imported.
"""
import ctypes
import fnmatch
import glob
import importlib.metadata
import importlib.util
import os
import re
import site
import struct
import sys
from dataclasses import asdict, dataclass, field
from typing import List, Optional

__all__ = ['SKIP_ENV_VAR', 'CUDA11_WHEELS', 'CudaLibrary', 'CudaWheel', 'CudaPreloadReport',
           'MXNetBuild', 'preload_cuda_libraries', 'preload_report', 'default_search_roots',
           'find_wheel_libraries', 'detect_mxnet_build', 'find_mxnet_library',
           'mxnet_distribution_names', 'read_elf_needed']

SKIP_ENV_VAR = 'GLUONSEG_SKIP_CUDA_PRELOAD'

# The NVIDIA driver library: it comes with the driver, never from a wheel.
CUDA_DRIVER_LIBRARY = 'libcuda.so.1'


@dataclass(frozen=True)
class CudaLibrary:
    """One shared library of a wheel.

    ``name`` is a file name, or an ``fnmatch`` pattern for files whose version suffix varies
    between wheel releases. An optional library is loaded when present and never reported missing.
    """
    name: str
    optional: bool = False


@dataclass(frozen=True)
class CudaWheel:
    """An ``nvidia-*-cu11`` wheel: its folder ``nvidia/<package_dir>/lib`` and its libraries.

    ``libraries`` are in load order, dependencies first; the last one is the library that
    ``libmxnet.so`` links against (:attr:`main_library`).
    """
    package_dir: str
    pip_name: str
    libraries: tuple

    @property
    def main_library(self):
        return self.libraries[-1].name


# In load order: a library comes after everything it links against (cuBLAS needs cuBLASLt,
# cuSOLVER and cuDNN need cuBLAS). libcudnn.so.8 dlopen()s its sub-libraries by soname at run
# time; having them loaded globally makes that lookup succeed.
CUDA11_WHEELS = (
    CudaWheel('cuda_runtime', 'nvidia-cuda-runtime-cu11', (CudaLibrary('libcudart.so.11.0'),)),
    CudaWheel('nvtx', 'nvidia-nvtx-cu11', (CudaLibrary('libnvToolsExt.so.1'),)),
    CudaWheel('cublas', 'nvidia-cublas-cu11', (CudaLibrary('libcublasLt.so.11'),
                                               CudaLibrary('libcublas.so.11'))),
    CudaWheel('cufft', 'nvidia-cufft-cu11', (CudaLibrary('libcufft.so.10'),)),
    CudaWheel('curand', 'nvidia-curand-cu11', (CudaLibrary('libcurand.so.10'),)),
    CudaWheel('cusolver', 'nvidia-cusolver-cu11', (CudaLibrary('libcusolver.so.11'),)),
    CudaWheel('cuda_nvrtc', 'nvidia-cuda-nvrtc-cu11', (
        CudaLibrary('libnvrtc-builtins.so.*', optional=True),  # suffix is the 11.x minor
        CudaLibrary('libnvrtc.so.11.2'))),
    CudaWheel('cudnn', 'nvidia-cudnn-cu11', (
        CudaLibrary('libcudnn_ops_infer.so.8', optional=True),
        CudaLibrary('libcudnn_ops_train.so.8', optional=True),
        CudaLibrary('libcudnn_cnn_infer.so.8', optional=True),
        CudaLibrary('libcudnn_cnn_train.so.8', optional=True),
        CudaLibrary('libcudnn_adv_infer.so.8', optional=True),
        CudaLibrary('libcudnn_adv_train.so.8', optional=True),
        CudaLibrary('libcudnn.so.8'))),
    CudaWheel('nccl', 'nvidia-nccl-cu11', (CudaLibrary('libnccl.so.2'),)),
)

# NEEDED entries that belong to CUDA (shown by gluonseg.env): libcuda*, libcu*, libnv*, libnccl*.
_CUDA_SONAME = re.compile(r'^lib(cu|nv|nccl)')
_CUDA_DISTRIBUTION = re.compile(r'^mxnet[-_.]?cu\d+', re.IGNORECASE)


@dataclass
class LoadedLibrary:
    """A library made available before mxnet: ``source`` is ``'wheel'`` (loaded from ``path``)
    or ``'system'`` (resolved by the dynamic loader from its soname ``name``)."""
    name: str
    source: str
    path: Optional[str] = None


@dataclass
class MissingLibrary:
    """A required library found neither by the dynamic loader nor in any wheel folder.

    ``needed_by_mxnet`` is True/False when the ``NEEDED`` list of ``libmxnet.so`` was read and
    says whether it links against the wheel's main library, None when it could not be read.
    """
    name: str
    pip_name: str
    needed_by_mxnet: Optional[bool] = None


@dataclass
class FailedLibrary:
    """A library file that was found but could not be loaded (``error`` is the dlopen message)."""
    name: str
    path: str
    error: str


@dataclass
class MXNetBuild:
    """What the installed MXNet is, found without importing it.

    ``cuda`` is None when mxnet is not installed or nothing could tell; ``evidence`` says how it
    was decided; ``cuda_needs`` are the CUDA sonames ``libmxnet.so`` links against (None when
    its ``NEEDED`` entries could not be read).
    """
    installed: bool
    cuda: Optional[bool]
    evidence: str
    library: Optional[str] = None
    cuda_needs: Optional[List[str]] = None


@dataclass
class CudaPreloadReport:
    """What :func:`preload_cuda_libraries` found, loaded and missed.

    ``status`` is ``'not run'``, ``'skipped'`` (``reason`` says why), ``'done'`` or ``'error'``
    (an unexpected exception, text in ``error``; preloading never raises).
    """
    status: str = 'not run'
    reason: str = ''
    cuda_build: Optional[bool] = None
    build_evidence: str = ''
    mxnet_library: Optional[str] = None
    mxnet_cuda_needs: Optional[List[str]] = None
    search_roots: List[str] = field(default_factory=list)
    loaded: List[LoadedLibrary] = field(default_factory=list)
    missing: List[MissingLibrary] = field(default_factory=list)
    failed: List[FailedLibrary] = field(default_factory=list)
    driver_loadable: Optional[bool] = None
    error: Optional[str] = None

    @property
    def blocking_missing(self):
        """Missing libraries that ``libmxnet.so`` needs (or may need, when unknown)."""
        return [m for m in self.missing if m.needed_by_mxnet is not False]

    def as_dict(self):
        """The report as plain data (lists and dicts), e.g. for JSON."""
        return asdict(self)


# The outcome of the last preload_cuda_libraries() call (the one made by ``import gluonseg``).
preload_report = CudaPreloadReport()


def _load_global(name_or_path):
    """dlopen with RTLD_GLOBAL so that later libraries resolve against it by soname."""
    return ctypes.CDLL(name_or_path, mode=ctypes.RTLD_GLOBAL)


def _skip_requested(environ):
    return environ.get(SKIP_ENV_VAR, '').strip().lower() in ('1', 'true', 'yes', 'on')


def default_search_roots():
    """Folders that may hold ``nvidia/*/lib``: site-packages, user site-packages, ``sys.path``.

    Returns
    -------
    list of str
        Absolute paths, duplicates removed, in search order.
    """
    roots = []
    # Some virtualenv versions ship a site.py without these functions.
    if hasattr(site, 'getsitepackages'):
        roots.extend(site.getsitepackages())
    if hasattr(site, 'getusersitepackages'):
        roots.append(site.getusersitepackages())
    roots.extend(sys.path)
    unique = []
    for root in roots:
        root = os.path.abspath(root or os.curdir)
        if root not in unique:
            unique.append(root)
    return unique


def find_wheel_libraries(search_roots):
    """Index the files of every ``<root>/nvidia/*/lib/`` folder.

    Parameters
    ----------
    search_roots : sequence of str
        Folders searched in order; a file name found in an earlier root hides later ones.

    Returns
    -------
    dict
        File name -> absolute path, in search order.
    """
    index = {}
    for root in search_roots:
        for lib_dir in sorted(glob.glob(os.path.join(root, 'nvidia', '*', 'lib'))):
            try:
                names = sorted(os.listdir(lib_dir))
            except OSError:
                continue
            for name in names:
                index.setdefault(name, os.path.join(lib_dir, name))
    return index


def _lookup(index, library):
    if not any(c in library.name for c in '*?['):
        return index.get(library.name)
    return next((path for name, path in index.items() if fnmatch.fnmatchcase(name, library.name)),
                None)


def read_elf_needed(path):
    """The ``DT_NEEDED`` entries (linked sonames) of an ELF shared library.

    Reads only the section headers, the ``.dynamic`` section and the needed strings, so it is
    cheap even for a 1 GB ``libmxnet.so``.

    Parameters
    ----------
    path : str
        The ELF file.

    Returns
    -------
    list of str
        Sonames in link order; empty for a file without a dynamic section.

    Raises
    ------
    ValueError
        If ``path`` is not a readable ELF file with section headers.
    OSError
        If it cannot be read.
    """
    with open(path, 'rb') as f:
        ident = f.read(16)
        if len(ident) < 16 or ident[:4] != b'\x7fELF':
            raise ValueError('%s is not an ELF file' % path)
        elf_class, byte_order = ident[4], ident[5]
        if elf_class not in (1, 2) or byte_order not in (1, 2):
            raise ValueError('%s has an unknown ELF class %d or byte order %d'
                             % (path, elf_class, byte_order))
        is_64 = elf_class == 2
        end = '<' if byte_order == 1 else '>'
        header_format = end + ('HHIQQQIHHHHHH' if is_64 else 'HHIIIIIHHHHHH')
        header = f.read(struct.calcsize(header_format))
        if len(header) != struct.calcsize(header_format):
            raise ValueError('%s: truncated ELF header' % path)
        (_, _, _, _, _, section_offset, _, _, _, _,
         section_entry_size, section_count, _) = struct.unpack(header_format, header)
        section_format = end + ('IIQQQQIIQQ' if is_64 else 'IIIIIIIIII')
        if section_offset == 0 or section_entry_size < struct.calcsize(section_format):
            raise ValueError('%s has no section headers' % path)

        def read_section(i):
            f.seek(section_offset + i * section_entry_size)
            raw = f.read(struct.calcsize(section_format))
            if len(raw) != struct.calcsize(section_format):
                raise ValueError('%s: section header %d is truncated' % (path, i))
            # (name, type, flags, addr, offset, size, link, info, addralign, entsize)
            return struct.unpack(section_format, raw)

        if section_count == 0:  # extended numbering: the count is in section 0's size field
            section_count = read_section(0)[5]
        sections = [read_section(i) for i in range(section_count)]
        dynamic = next((s for s in sections if s[1] == 6), None)  # SHT_DYNAMIC
        if dynamic is None:
            return []
        if dynamic[6] >= section_count:
            raise ValueError('%s: .dynamic links to a missing string table' % path)
        string_table_offset = sections[dynamic[6]][4]
        entry_format = end + ('qQ' if is_64 else 'iI')
        entry_size = struct.calcsize(entry_format)
        f.seek(dynamic[4])
        raw = f.read(dynamic[5])
        needed_offsets = []
        for tag, value in struct.iter_unpack(entry_format, raw[:len(raw) - len(raw) % entry_size]):
            if tag == 0:  # DT_NULL ends the table
                break
            if tag == 1:  # DT_NEEDED
                needed_offsets.append(value)
        needed = []
        for offset in needed_offsets:
            f.seek(string_table_offset + offset)
            needed.append(f.read(4096).split(b'\0', 1)[0].decode('utf-8', 'replace'))
        return needed


def find_mxnet_library(environ=None):
    """The ``libmxnet.so`` that ``import mxnet`` would load, found without importing mxnet.

    Follows mxnet's own ``libinfo.find_lib_path``: an absolute ``$MXNET_LIBRARY_PATH`` file,
    then the folders of ``$LD_LIBRARY_PATH``, then the mxnet package folder.

    Parameters
    ----------
    environ : mapping, optional
        Environment variables (default ``os.environ``).

    Returns
    -------
    str or None
        None when mxnet is not installed or has no ``libmxnet.so``.
    """
    environ = os.environ if environ is None else environ
    from_env = environ.get('MXNET_LIBRARY_PATH')
    if from_env and os.path.isabs(from_env) and os.path.isfile(from_env):
        return from_env
    package_dirs = _mxnet_package_dirs()
    if not package_dirs:
        return None
    ld_dirs = [d.strip() for d in environ.get('LD_LIBRARY_PATH', '').split(':') if d.strip()]
    for folder in ld_dirs + package_dirs:
        candidate = os.path.join(folder, 'libmxnet.so')
        if os.path.isfile(candidate):
            return candidate
    return None


def _mxnet_package_dirs():
    try:
        # For a top-level package find_spec locates it without executing it.
        spec = importlib.util.find_spec('mxnet')
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    return list(spec.submodule_search_locations or [])


def mxnet_distribution_names():
    """Names of the installed MXNet distributions (``mxnet``, ``mxnet-cu112``, ...).

    Returns
    -------
    list of str
        Sorted; more than one means conflicting installs.
    """
    names = []
    for dist in importlib.metadata.distributions():
        name = dist.metadata['Name'] or ''
        if re.match(r'^mxnet([-_.].*)?$', name, re.IGNORECASE):
            names.append(name)
    return sorted(set(names))


def detect_mxnet_build(mxnet_library=None, environ=None):
    """Tell whether the installed MXNet is a CUDA build, without importing it.

    Parameters
    ----------
    mxnet_library : str, optional
        The ``libmxnet.so`` to inspect (default: :func:`find_mxnet_library`).
    environ : mapping, optional
        Environment variables (default ``os.environ``).

    Returns
    -------
    MXNetBuild
    """
    library = mxnet_library or find_mxnet_library(environ)
    unreadable = ''
    if library:
        try:
            needed = read_elf_needed(library)
        except (OSError, ValueError) as exc:
            unreadable = '; could not read %s (%s)' % (library, exc)
        else:
            cuda_needs = [n for n in needed if _CUDA_SONAME.match(n)]
            cudart = [n for n in needed if n.startswith('libcudart.')]
            if cudart:
                evidence = '%s links against %s' % (library, cudart[0])
            else:
                evidence = '%s does not link against libcudart' % library
            return MXNetBuild(True, bool(cudart), evidence, library, cuda_needs)
    distributions = mxnet_distribution_names()
    cuda_distributions = [n for n in distributions if _CUDA_DISTRIBUTION.match(n)]
    if cuda_distributions:
        return MXNetBuild(True, True, 'installed distribution %s%s'
                          % (cuda_distributions[0], unreadable), library)
    if distributions:
        return MXNetBuild(True, False, 'installed distribution %s%s'
                          % (distributions[0], unreadable), library)
    if _mxnet_package_dirs():
        return MXNetBuild(True, None, 'mxnet package found but neither libmxnet.so nor a '
                          'distribution tells its build%s' % unreadable, library)
    return MXNetBuild(False, None, 'mxnet is not installed')


def preload_cuda_libraries(search_roots=None, load_library=None, cuda_build=None, environ=None):
    """Load the CUDA 11 libraries of the ``nvidia-*-cu11`` wheels before mxnet is imported.

    See the module docstring for the rules. Never raises; the outcome is returned and also
    stored in the module attribute :data:`preload_report`.

    Parameters
    ----------
    search_roots : sequence of str, optional
        Folders holding ``nvidia/<wheel>/lib/`` (default :func:`default_search_roots`).
    load_library : callable, optional
        ``load_library(soname_or_path)`` loads a library globally and raises ``OSError`` when it
        cannot (default: ``ctypes.CDLL(..., mode=RTLD_GLOBAL)``). Called with a bare soname to
        ask the dynamic loader for a system copy, with a path to load a wheel's copy.
    cuda_build : bool, optional
        Whether MXNet is a CUDA build (default: :func:`detect_mxnet_build`).
    environ : mapping, optional
        Environment variables (default ``os.environ``).

    Returns
    -------
    CudaPreloadReport
    """
    global preload_report
    report = preload_report = CudaPreloadReport()
    try:
        _preload(report, search_roots, load_library or _load_global, cuda_build,
                 os.environ if environ is None else environ)
    except Exception as exc:  # an import of gluonseg must never fail because of this
        report.status = 'error'
        report.error = '%s: %s' % (type(exc).__name__, exc)
    return report


def _preload(report, search_roots, load_library, cuda_build, environ):
    if _skip_requested(environ):
        report.status, report.reason = 'skipped', '%s=%s is set' % (
            SKIP_ENV_VAR, environ.get(SKIP_ENV_VAR))
        return
    if not sys.platform.startswith('linux'):
        report.status = 'skipped'
        report.reason = ('the nvidia-*-cu11 wheels are preloaded on Linux only, not %s'
                         % sys.platform)
        return
    if cuda_build is None:
        build = detect_mxnet_build(environ=environ)
        report.cuda_build, report.build_evidence = build.cuda, build.evidence
        report.mxnet_library, report.mxnet_cuda_needs = build.library, build.cuda_needs
        if not build.installed:
            report.status, report.reason = 'skipped', 'mxnet is not installed'
            return
    else:
        report.cuda_build, report.build_evidence = bool(cuda_build), 'given by the caller'
    if not report.cuda_build:
        report.status = 'skipped'
        report.reason = 'MXNet is not a CUDA build (%s)' % report.build_evidence
        return

    report.search_roots = list(default_search_roots() if search_roots is None else search_roots)
    index = find_wheel_libraries(report.search_roots)
    needs = report.mxnet_cuda_needs
    for wheel in CUDA11_WHEELS:
        try:
            load_library(wheel.main_library)
        except OSError:
            pass
        else:
            report.loaded.append(LoadedLibrary(wheel.main_library, 'system'))
            continue
        needed = None if needs is None else wheel.main_library in needs
        for library in wheel.libraries:
            path = _lookup(index, library)
            if path is None:
                if not library.optional:
                    report.missing.append(MissingLibrary(library.name, wheel.pip_name, needed))
                continue
            try:
                load_library(path)
            except OSError as exc:
                report.failed.append(FailedLibrary(library.name, path, str(exc)))
            else:
                report.loaded.append(LoadedLibrary(os.path.basename(path), 'wheel', path))
    try:
        load_library(CUDA_DRIVER_LIBRARY)
        report.driver_loadable = True
    except OSError:
        report.driver_loadable = False
    report.status = 'done'
