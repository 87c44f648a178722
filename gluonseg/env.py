"""Describe the gluonseg environment and say what is wrong with it.

Run ``python -m gluonseg.env`` (``--json`` for machine-readable output). The exit code is 0 when
no problem was found and 1 otherwise, so the command can gate CI jobs.

The work is split so that the diagnosis can be tested on fabricated data:
:func:`collect` gathers facts into a dict, :func:`problems` turns such a dict into messages,
:func:`format_report` renders it.
"""
import argparse
import json
import os
import platform
import re
import sys

from . import __version__, _cuda
from .utils import paths
from .utils.download import ATTEMPT_TIMEOUT_ENV, DEADLINE_ENV, EXTRACT_MAX_SIZE_ENV

__all__ = ['SUPPORTED_MXNET_VERSION', 'ENV_VARS', 'collect', 'problems', 'format_report', 'main']

SUPPORTED_MXNET_VERSION = '1.9.1'
# MXNet 1.9.1 publishes no wheels for newer Pythons.
NEWEST_SUPPORTED_PYTHON = (3, 11)
# MXNet 1.9.1 uses np.bool, which numpy 1.24 removed.
FIRST_BROKEN_NUMPY = (1, 24)

ENV_VARS = ('GLUONSEG_HOME', 'GLUONSEG_REPO_URL', ATTEMPT_TIMEOUT_ENV, DEADLINE_ENV,
            EXTRACT_MAX_SIZE_ENV, 'MXNET_GLUON_REPO', 'MXNET_HOME',
            'OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS', _cuda.SKIP_ENV_VAR,
            'MXNET_LIBRARY_PATH', 'LD_LIBRARY_PATH', 'CUDA_VISIBLE_DEVICES')

CU112_INSTALL = 'pip install "gluonseg[cu112]"'
# platform.machine() of the CPUs where MXNet halves its default thread count.
X86_MACHINES = ('x86_64', 'AMD64', 'i386', 'i686')


def _version_tuple(version):
    """Leading numeric components: '1.24.0rc1' -> (1, 24, 0)."""
    match = re.match(r'^\s*(\d+(?:\.\d+)*)', version or '')
    return tuple(int(p) for p in match.group(1).split('.')) if match else ()


def _error_text(exc):
    return '%s: %s' % (type(exc).__name__, exc)


def _gluoncv_models_dir():
    # GluonCV caches weights in mxnet.base.data_dir()/models, i.e. $MXNET_HOME or ~/.mxnet.
    return os.path.join(os.path.expanduser(os.environ.get('MXNET_HOME', '~/.mxnet')), 'models')


def _collect_numpy():
    try:
        import numpy  # lazy: a broken numpy is reported, not raised
    except Exception as exc:  # a broken install can fail with more than ImportError
        return {'version': None, 'error': _error_text(exc)}
    return {'version': numpy.__version__, 'error': None}


def _collect_mxnet():
    info = {'installed': False, 'version': None, 'path': None, 'distributions': [],
            'import_error': None, 'features': None, 'cuda_build': None}
    try:
        info['distributions'] = _cuda.mxnet_distribution_names()
    except Exception:  # metadata of unrelated broken distributions must not stop the report
        pass
    build = _cuda.detect_mxnet_build()
    info['installed'] = build.installed or bool(info['distributions'])
    info['cuda_build'] = build.cuda
    if not info['installed']:
        return info, None
    try:
        import mxnet as mx  # lazy: a missing or broken MXNet is reported, not raised
    except Exception as exc:  # OSError for a missing CUDA library, AttributeError for np.bool
        info['import_error'] = _error_text(exc)
        return info, None
    info['version'] = getattr(mx, '__version__', None)
    info['path'] = os.path.dirname(getattr(mx, '__file__', '') or '') or None
    try:
        features = mx.runtime.Features()
        info['features'] = sorted(name for name, feature in features.items() if feature.enabled)
        info['cuda_build'] = 'CUDA' in info['features']
    except Exception as exc:
        info['features_error'] = _error_text(exc)
    return info, mx


def _collect_gpus(mx):
    if mx is None:
        return {'count': None, 'error': 'mxnet could not be imported'}
    try:
        return {'count': int(mx.context.num_gpus()), 'error': None}
    except Exception as exc:  # MXNetError when the driver is missing or too old
        return {'count': None, 'error': _error_text(exc)}


def _threads_per_core():
    """Hardware threads of CPU 0's core (Linux sysfs), None where unknown."""
    try:
        with open('/sys/devices/system/cpu/cpu0/topology/thread_siblings_list') as f:
            return cpu_list_size(f.read())
    except (OSError, ValueError):
        return None


def cpu_list_size(text):
    """The number of CPUs in a Linux CPU list such as ``'0'``, ``'0-1'`` or ``'0,8'``."""
    count = 0
    for part in text.strip().split(','):
        first, _, last = part.partition('-')
        low = int(first)  # ValueError for what is not a CPU list
        count += int(last) - low + 1 if last else 1
    return count


def _collect_cpu():
    try:
        logical = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        logical = os.cpu_count()
    return {'machine': platform.machine(), 'logical': logical,
            'threads_per_core': _threads_per_core()}


def _path_info(path):
    return {'path': path, 'exists': os.path.isdir(path)}


def collect():
    """Gather facts about the environment.

    Imports mxnet (guarded: a failing import is recorded, not raised).

    Returns
    -------
    dict
        Keys ``gluonseg``, ``python``, ``numpy``, ``mxnet``, ``gpus``, ``cpu``,
        ``cuda_preload``, ``cache``, ``env``; see :func:`format_report` for their meaning.
    """
    mxnet_info, mx = _collect_mxnet()
    return {
        'gluonseg': {'version': __version__,
                     'path': os.path.dirname(os.path.abspath(__file__))},
        'python': {'version': platform.python_version(),
                   'version_info': list(sys.version_info[:3]),
                   'executable': sys.executable,
                   'platform': platform.platform()},
        'numpy': _collect_numpy(),
        'mxnet': mxnet_info,
        'gpus': _collect_gpus(mx),
        'cpu': _collect_cpu(),
        # Read through the module: preload_cuda_libraries() rebinds it on every call.
        'cuda_preload': _cuda.preload_report.as_dict(),
        'cache': {'gluonseg_models': _path_info(paths.models_dir()),
                  'gluonseg_datasets': _path_info(paths.datasets_dir()),
                  'gluoncv_models': _path_info(_gluoncv_models_dir())},
        'env': {name: os.environ.get(name) for name in ENV_VARS},
    }


def _is_cuda_build(info):
    mxnet_info = info.get('mxnet') or {}
    if mxnet_info.get('cuda_build') is not None:
        return mxnet_info['cuda_build']
    if (info.get('cuda_preload') or {}).get('cuda_build'):
        return True
    return any(re.match(r'^mxnet[-_.]?cu\d+', name, re.IGNORECASE)
               for name in mxnet_info.get('distributions') or [])


def problems(info):
    """Diagnose an environment described by :func:`collect`.

    Parameters
    ----------
    info : dict
        As returned by :func:`collect`; missing keys are treated as unknown, so hand-made
        partial dicts work.

    Returns
    -------
    list of str
        One self-contained message per problem, each saying what to do; empty when all is well.
    """
    found = []
    python_version = tuple((info.get('python') or {}).get('version_info') or ())[:2]
    if python_version and python_version > NEWEST_SUPPORTED_PYTHON:
        found.append('Python %d.%d is newer than %d.%d, the newest Python MXNet %s has wheels for; '
                     'use Python 3.8 to 3.11.' % (python_version + NEWEST_SUPPORTED_PYTHON
                                                  + (SUPPORTED_MXNET_VERSION,)))

    numpy_info = info.get('numpy') or {}
    numpy_version = numpy_info.get('version')
    if numpy_version is None and 'numpy' in info:
        found.append('numpy cannot be imported (%s): pip install "numpy<1.24".'
                     % (numpy_info.get('error') or 'not installed'))
    elif numpy_version and _version_tuple(numpy_version)[:2] >= FIRST_BROKEN_NUMPY:
        found.append('numpy %s is installed, but MXNet %s uses np.bool, which numpy 1.24 removed '
                     '(AttributeError on import or in operators): pip install "numpy<1.24".'
                     % (numpy_version, SUPPORTED_MXNET_VERSION))

    mxnet_info = info.get('mxnet') or {}
    cuda_build = _is_cuda_build(info)
    if mxnet_info.get('installed') is False:
        found.append('MXNet is not installed: pip install "gluonseg[cpu]" (or %s for NVIDIA GPUs).'
                     % CU112_INSTALL)
    elif mxnet_info.get('import_error'):
        found.append('MXNet is installed but "import mxnet" fails: %s' % mxnet_info['import_error'])
    elif mxnet_info.get('version') and mxnet_info['version'] != SUPPORTED_MXNET_VERSION:
        found.append('MXNet %s is installed; gluonseg supports MXNet %s only: pip install '
                     '"gluonseg[cpu]" or %s.' % (mxnet_info['version'], SUPPORTED_MXNET_VERSION,
                                                 CU112_INSTALL))
    found.extend(_thread_problems(info))
    distributions = mxnet_info.get('distributions') or []
    if len(distributions) > 1:
        found.append('Several MXNet distributions are installed (%s); they overwrite each other\'s '
                     'files: uninstall all of them, then install one.' % ', '.join(distributions))

    preload = info.get('cuda_preload') or {}
    if preload.get('status') == 'error':
        found.append('Preloading the CUDA libraries failed unexpectedly: %s'
                     % preload.get('error'))
    if cuda_build:
        blocking = [m for m in preload.get('missing') or []
                    if m.get('needed_by_mxnet') is not False]
        if blocking:
            found.append('MXNet is a CUDA build, but these CUDA libraries are neither on the '
                         'system nor in an nvidia-*-cu11 wheel: %s; install them with: %s' % (
                             ', '.join('%s (%s)' % (m['name'], m['pip_name']) for m in blocking),
                             CU112_INSTALL))
        for failure in preload.get('failed') or []:
            found.append('%s was found at %s but could not be loaded: %s'
                         % (failure['name'], failure['path'], failure['error']))
        gpus = info.get('gpus') or {}
        if gpus.get('count') == 0:
            reason = ''
            if preload.get('driver_loadable') is False:
                reason = ' The NVIDIA driver library %s cannot be loaded: install the NVIDIA ' \
                         'driver.' % _cuda.CUDA_DRIVER_LIBRARY
            found.append('MXNet is a CUDA build but sees no GPU (mx.context.num_gpus() == 0).%s '
                         'Check nvidia-smi and CUDA_VISIBLE_DEVICES, or install the CPU build: '
                         'pip install "gluonseg[cpu]".' % reason)
        elif gpus.get('count') is None and gpus.get('error') and not mxnet_info.get('import_error'):
            found.append('MXNet is a CUDA build but counting GPUs failed: %s' % gpus['error'])
    return found


def _thread_problems(info):
    """MXNet's default CPU thread count on a CPU without hyper-threading: with neither
    OMP_NUM_THREADS nor MXNET_OMP_MAX_THREADS set, MXNet 1.9.1 runs its operators on half
    the logical CPUs on x86 (src/engine/openmp.cc), which counts on two hardware threads per
    core; where each core has one (many cloud VMs) that is half the cores."""
    cpu, variables = info.get('cpu') or {}, info.get('env')
    logical = cpu.get('logical') or 0
    if (variables is None or 'OMP_NUM_THREADS' not in variables or
            variables.get('OMP_NUM_THREADS') is not None or
            variables.get('MXNET_OMP_MAX_THREADS') is not None or
            cpu.get('machine') not in X86_MACHINES or cpu.get('threads_per_core') != 1 or
            logical < 2):
        return []
    return ['OMP_NUM_THREADS is not set, so MXNet runs its CPU operators on %d of the %d '
            'cores (on x86 it takes half the logical CPUs, counting on two hardware threads '
            'per core; this CPU has one): export OMP_NUM_THREADS=%d. gluonseg\'s scripts set '
            'it themselves.' % (logical // 2, logical, logical)]


def _preload_lines(preload):
    status = preload.get('status', 'not run')
    lines = ['CUDA preload %s%s' % (status, ': %s' % preload['reason']
                                    if preload.get('reason') else '')]
    if preload.get('cuda_build') and preload.get('build_evidence'):
        lines.append('  CUDA build: %s' % preload['build_evidence'])
    if preload.get('mxnet_cuda_needs'):
        lines.append('  libmxnet.so needs: %s' % ', '.join(preload['mxnet_cuda_needs']))
    for loaded in preload.get('loaded') or []:
        if loaded['source'] == 'wheel':
            lines.append('  loaded  %s' % loaded['path'])
        else:
            lines.append('  system  %s (resolved by the dynamic loader)' % loaded['name'])
    for missing in preload.get('missing') or []:
        note = ' (libmxnet.so does not need it)' if missing.get('needed_by_mxnet') is False else ''
        lines.append('  MISSING %s from %s%s' % (missing['name'], missing['pip_name'], note))
    for failure in preload.get('failed') or []:
        lines.append('  FAILED  %s: %s' % (failure['path'], failure['error']))
    if preload.get('driver_loadable') is not None:
        lines.append('  NVIDIA driver %s: %s' % (
            _cuda.CUDA_DRIVER_LIBRARY,
            'loadable' if preload['driver_loadable'] else 'NOT loadable'))
    if preload.get('error'):
        lines.append('  error: %s' % preload['error'])
    return lines


def format_report(info):
    """Render :func:`collect` output and its :func:`problems` as text.

    Parameters
    ----------
    info : dict
        As returned by :func:`collect` (partial dicts are rendered as far as they go).

    Returns
    -------
    str
        Several lines, ending with the problems found or ``No problems found.``
    """
    unknown = 'unknown'
    gluonseg_info = info.get('gluonseg') or {}
    python_info = info.get('python') or {}
    numpy_info = info.get('numpy') or {}
    mxnet_info = info.get('mxnet') or {}
    gpus = info.get('gpus') or {}
    lines = [
        'gluonseg     %s (%s)' % (gluonseg_info.get('version', unknown),
                                  gluonseg_info.get('path', unknown)),
        'Python       %s (%s) on %s' % (python_info.get('version', unknown),
                                        python_info.get('executable', unknown),
                                        python_info.get('platform', unknown)),
        'numpy        %s' % (numpy_info.get('version') or 'NOT importable: %s'
                             % numpy_info.get('error')),
    ]
    if mxnet_info.get('installed') is False:
        lines.append('MXNet        NOT installed')
    elif mxnet_info.get('import_error'):
        lines.append('MXNet        installed (%s) but import fails: %s' % (
            ', '.join(mxnet_info.get('distributions') or []) or unknown,
            mxnet_info['import_error']))
    else:
        lines.append('MXNet        %s (%s) at %s' % (
            mxnet_info.get('version', unknown),
            ', '.join(mxnet_info.get('distributions') or []) or 'no distribution metadata',
            mxnet_info.get('path', unknown)))
    if mxnet_info.get('features') is not None:
        lines.append('  features:  %s' % (', '.join(mxnet_info['features']) or 'none'))
    cpu = info.get('cpu') or {}
    if cpu:
        lines.append('CPU          %s, %s logical CPUs, %s thread(s) per core' % (
            cpu.get('machine') or unknown, cpu.get('logical') or unknown,
            cpu.get('threads_per_core') or unknown))
    if gpus.get('count') is not None:
        lines.append('GPUs seen    %d' % gpus['count'])
    else:
        lines.append('GPUs seen    unknown (%s)' % gpus.get('error', unknown))
    lines.extend(_preload_lines(info.get('cuda_preload') or {}))

    lines.append('Caches')
    labels = (('gluonseg_models', 'gluonseg models'), ('gluonseg_datasets', 'gluonseg datasets'),
              ('gluoncv_models', 'GluonCV models'))
    for key, label in labels:
        entry = (info.get('cache') or {}).get(key)
        if entry:
            lines.append('  %-18s %s (%s)' % (label + ':', entry['path'],
                                              'exists' if entry.get('exists') else 'not created'))
    lines.append('Environment variables')
    for name, value in (info.get('env') or {}).items():
        lines.append('  %s=%s' % (name, value if value is not None else '(unset)'))

    found = problems(info)
    if found:
        lines.append('Problems (%d):' % len(found))
        lines.extend('  - %s' % message for message in found)
    else:
        lines.append('No problems found.')
    return '\n'.join(lines)


def main(argv=None):
    """Print the environment report.

    Parameters
    ----------
    argv : list of str, optional
        Command-line arguments (default ``sys.argv[1:]``); ``--json`` prints the collected data
        and the problems as JSON.

    Returns
    -------
    int
        0 when no problem was found, 1 otherwise.
    """
    parser = argparse.ArgumentParser(prog='python -m gluonseg.env',
                                     description=__doc__.split('\n')[0])
    parser.add_argument('--json', action='store_true', help='print JSON instead of text')
    args = parser.parse_args(argv)
    info = collect()
    found = problems(info)
    if args.json:
        print(json.dumps(dict(info, problems=found), indent=2, sort_keys=True))
    else:
        print(format_report(info))
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
