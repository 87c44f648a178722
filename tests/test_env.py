"""``python -m gluonseg.env``: the real report, and the diagnosis on fabricated environments."""
import copy
import json
import os
import subprocess
import sys

import pytest

from gluonseg import env

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_env_module(*args):
    process_env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    return subprocess.run([sys.executable, '-m', 'gluonseg.env'] + list(args), env=process_env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_module_prints_versions_and_matching_exit_code():
    import mxnet
    import numpy
    result = run_env_module()
    assert result.returncode in (0, 1), result.stderr
    out = result.stdout
    assert 'MXNet        %s' % mxnet.__version__ in out
    assert 'numpy        %s' % numpy.__version__ in out
    assert 'CUDA preload' in out and 'GPUs seen' in out and 'GluonCV models' in out
    assert 'GLUONSEG_HOME=' in out and 'OMP_NUM_THREADS=' in out
    assert ('No problems found.' in out) == (result.returncode == 0)


def test_module_json_output():
    result = run_env_module('--json')
    assert result.returncode in (0, 1), result.stderr
    data = json.loads(result.stdout)
    assert {'gluonseg', 'python', 'numpy', 'mxnet', 'gpus', 'cuda_preload', 'cache', 'env',
            'problems'} <= set(data)
    assert bool(data['problems']) == (result.returncode == 1)


def healthy_cpu_info():
    return {
        'gluonseg': {'version': '0.1.0', 'path': '/site-packages/gluonseg'},
        'python': {'version': '3.11.7', 'version_info': [3, 11, 7], 'executable': '/bin/python',
                   'platform': 'Linux'},
        'numpy': {'version': '1.23.5', 'error': None},
        'mxnet': {'installed': True, 'version': '1.9.1', 'path': '/site-packages/mxnet',
                  'distributions': ['mxnet'], 'import_error': None,
                  'features': ['BLAS_OPEN', 'MKLDNN', 'OPENMP'], 'cuda_build': False},
        'gpus': {'count': 0, 'error': None},
        'cuda_preload': {'status': 'skipped', 'reason': 'MXNet is not a CUDA build',
                         'cuda_build': False, 'loaded': [], 'missing': [], 'failed': [],
                         'driver_loadable': None, 'error': None},
        'cache': {'gluonseg_models': {'path': '/home/u/.gluonseg/models', 'exists': True}},
        'env': {'GLUONSEG_HOME': None},
    }


def healthy_gpu_info():
    info = healthy_cpu_info()
    info['mxnet'].update(distributions=['mxnet-cu112'], cuda_build=True,
                         features=['CUDA', 'CUDNN', 'NCCL'])
    info['gpus'] = {'count': 2, 'error': None}
    info['cuda_preload'] = {
        'status': 'done', 'reason': '', 'cuda_build': True,
        'loaded': [{'name': 'libcudart.so.11.0', 'source': 'wheel',
                    'path': '/sp/nvidia/cuda_runtime/lib/libcudart.so.11.0'}],
        'missing': [], 'failed': [], 'driver_loadable': True, 'error': None}
    return info


@pytest.mark.parametrize('make_info', [healthy_cpu_info, healthy_gpu_info])
def test_healthy_environment_has_no_problems(make_info):
    info = make_info()
    assert env.problems(info) == []
    assert env.format_report(info).endswith('No problems found.')


@pytest.mark.parametrize('version', ['1.24.0', '1.24.0rc1', '1.26.4', '2.0.0'])
def test_numpy_1_24_or_newer_is_flagged(version):
    info = healthy_cpu_info()
    info['numpy']['version'] = version
    found = env.problems(info)
    assert len(found) == 1
    assert 'numpy %s' % version in found[0] and 'np.bool' in found[0]
    assert 'numpy<1.24' in found[0]


def test_numpy_1_23_is_fine():
    info = healthy_cpu_info()
    info['numpy']['version'] = '1.23.0'
    assert env.problems(info) == []


def test_missing_cuda_libraries_are_named_with_their_wheel():
    info = healthy_gpu_info()
    info['cuda_preload']['missing'] = [
        {'name': 'libcudnn.so.8', 'pip_name': 'nvidia-cudnn-cu11', 'needed_by_mxnet': True},
        {'name': 'libnccl.so.2', 'pip_name': 'nvidia-nccl-cu11', 'needed_by_mxnet': None},
        # libmxnet.so does not link it: reported by the preload, not a problem.
        {'name': 'libnvToolsExt.so.1', 'pip_name': 'nvidia-nvtx-cu11', 'needed_by_mxnet': False},
    ]
    found = env.problems(info)
    assert len(found) == 1
    assert 'libcudnn.so.8 (nvidia-cudnn-cu11)' in found[0]
    assert 'libnccl.so.2 (nvidia-nccl-cu11)' in found[0]
    assert 'libnvToolsExt' not in found[0]
    assert 'pip install "gluonseg[cu112]"' in found[0]
    report = env.format_report(info)
    assert 'MISSING libcudnn.so.8 from nvidia-cudnn-cu11' in report
    assert 'Problems (1):' in report


def test_cuda_build_whose_import_fails_is_diagnosed_from_the_distribution():
    info = healthy_gpu_info()
    info['mxnet'].update(version=None, features=None, cuda_build=None,
                         import_error='OSError: libcudnn.so.8: cannot open shared object file')
    info['gpus'] = {'count': None, 'error': 'mxnet could not be imported'}
    info['cuda_preload']['missing'] = [
        {'name': 'libcudnn.so.8', 'pip_name': 'nvidia-cudnn-cu11', 'needed_by_mxnet': True}]
    found = env.problems(info)
    assert len(found) == 2
    assert 'import mxnet' in found[0] and 'libcudnn.so.8: cannot open' in found[0]
    assert 'libcudnn.so.8 (nvidia-cudnn-cu11)' in found[1]


def test_unloadable_cuda_library_is_flagged():
    info = healthy_gpu_info()
    info['cuda_preload']['failed'] = [{'name': 'libnccl.so.2', 'path': '/sp/libnccl.so.2',
                                       'error': 'invalid ELF header'}]
    assert env.problems(info) == [
        'libnccl.so.2 was found at /sp/libnccl.so.2 but could not be loaded: invalid ELF header']


def test_cuda_build_without_gpu_is_flagged():
    info = healthy_gpu_info()
    info['gpus']['count'] = 0
    info['cuda_preload']['driver_loadable'] = False
    found = env.problems(info)
    assert len(found) == 1
    assert 'CUDA build but sees no GPU' in found[0]
    assert 'libcuda.so.1' in found[0]


def test_cpu_build_without_gpu_is_fine():
    info = healthy_cpu_info()
    info['gpus']['count'] = 0
    assert env.problems(info) == []


def test_python_newer_than_3_11_is_flagged():
    info = healthy_cpu_info()
    info['python']['version_info'] = [3, 12, 1]
    found = env.problems(info)
    assert len(found) == 1 and found[0].startswith('Python 3.12 is newer than 3.11')


def test_mxnet_missing_is_flagged():
    info = healthy_cpu_info()
    info['mxnet'] = {'installed': False, 'version': None, 'distributions': [],
                     'import_error': None, 'features': None, 'cuda_build': None}
    info['gpus'] = {'count': None, 'error': 'mxnet could not be imported'}
    found = env.problems(info)
    assert len(found) == 1 and found[0].startswith('MXNet is not installed')
    assert 'MXNet        NOT installed' in env.format_report(info)


def test_other_mxnet_versions_and_duplicate_installs_are_flagged():
    info = healthy_cpu_info()
    info['mxnet'].update(version='1.8.0', distributions=['mxnet', 'mxnet-cu112'])
    found = env.problems(info)
    assert len(found) == 2
    assert 'MXNet 1.8.0 is installed' in found[0]
    assert 'mxnet, mxnet-cu112' in found[1]


def test_partial_info_does_not_crash():
    assert env.problems({}) == []
    assert env.format_report({}).endswith('No problems found.')


def test_main_exit_code_follows_problems(monkeypatch, capsys):
    info = healthy_cpu_info()
    monkeypatch.setattr(env, 'collect', lambda: copy.deepcopy(info))
    assert env.main([]) == 0
    info['numpy']['version'] = '1.24.1'
    assert env.main([]) == 1
    assert 'numpy 1.24.1 is installed' in capsys.readouterr().out


def one_thread_per_core_info(**env_vars):
    """A healthy 8-core x86 machine without hyper-threading, OMP_NUM_THREADS unset."""
    info = healthy_cpu_info()
    info['cpu'] = {'machine': 'x86_64', 'logical': 8, 'threads_per_core': 1}
    info['env'] = dict({'OMP_NUM_THREADS': None, 'MXNET_OMP_MAX_THREADS': None}, **env_vars)
    return info


def test_mxnets_half_the_cpus_default_is_flagged_without_hyper_threading():
    found = env.problems(one_thread_per_core_info())
    assert len(found) == 1
    assert 'on 4 of the 8 cores' in found[0] and 'export OMP_NUM_THREADS=8' in found[0]
    assert 'x86_64, 8 logical CPUs, 1 thread(s) per core' in env.format_report(
        one_thread_per_core_info())


@pytest.mark.parametrize('change', [
    dict(env={'OMP_NUM_THREADS': '8'}),          # the user chose
    dict(env={'MXNET_OMP_MAX_THREADS': '8'}),    # MXNet's own override
    dict(cpu={'threads_per_core': 2}),           # hyper-threading: half is one per core
    dict(cpu={'threads_per_core': None}),        # unknown topology: no guess
    dict(cpu={'machine': 'aarch64'}),            # MXNet halves on x86 only
    dict(cpu={'logical': 1}),
])
def test_the_thread_default_is_not_flagged_where_it_is_right_or_unknown(change):
    info = one_thread_per_core_info(**change.get('env', {}))
    info['cpu'].update(change.get('cpu', {}))
    assert env.problems(info) == []


@pytest.mark.parametrize('text,count', [('0', 1), ('0-1', 2), ('0,8', 2), ('0-3,8-11\n', 8)])
def test_cpu_lists_are_counted(text, count):
    assert env.cpu_list_size(text) == count
