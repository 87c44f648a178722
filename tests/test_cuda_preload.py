"""Preloading the nvidia-*-cu11 wheel libraries (gluonseg/_cuda.py) on fake site-packages trees.

The fake library files cannot be dlopen()ed, so a recording loader is injected: it refuses bare
sonames (no system CUDA) and records the paths it is asked to load. One test builds real tiny
shared libraries with a C compiler to check that the load order satisfies their dependencies.
"""
import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_cuda_module():
    # Load gluonseg/_cuda.py on its own: it must not need mxnet nor the rest of gluonseg.
    spec = importlib.util.spec_from_file_location(
        'gluonseg_cuda_under_test', os.path.join(REPO_ROOT, 'gluonseg', '_cuda.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


cuda = _load_cuda_module()

# Every file of the nvidia-*-cu11 wheels that gluonseg knows, plus unrelated neighbours.
WHEEL_FILES = {
    'cuda_runtime': ['libcudart.so.11.0'],
    'nvtx': ['libnvToolsExt.so.1'],
    'cublas': ['libcublas.so.11', 'libcublasLt.so.11', 'libnvblas.so.11'],
    'cufft': ['libcufft.so.10', 'libcufftw.so.10'],
    'curand': ['libcurand.so.10'],
    'cusolver': ['libcusolver.so.11', 'libcusolverMg.so.11'],
    'cuda_nvrtc': ['libnvrtc.so.11.2', 'libnvrtc-builtins.so.11.8'],
    'cudnn': ['libcudnn.so.8', 'libcudnn_ops_infer.so.8', 'libcudnn_ops_train.so.8',
              'libcudnn_cnn_infer.so.8', 'libcudnn_cnn_train.so.8', 'libcudnn_adv_infer.so.8',
              'libcudnn_adv_train.so.8'],
    'nccl': ['libnccl.so.2'],
}

EXPECTED_LOAD_ORDER = [
    'cuda_runtime/lib/libcudart.so.11.0',
    'nvtx/lib/libnvToolsExt.so.1',
    'cublas/lib/libcublasLt.so.11',
    'cublas/lib/libcublas.so.11',
    'cufft/lib/libcufft.so.10',
    'curand/lib/libcurand.so.10',
    'cusolver/lib/libcusolver.so.11',
    'cuda_nvrtc/lib/libnvrtc-builtins.so.11.8',
    'cuda_nvrtc/lib/libnvrtc.so.11.2',
    'cudnn/lib/libcudnn_ops_infer.so.8',
    'cudnn/lib/libcudnn_ops_train.so.8',
    'cudnn/lib/libcudnn_cnn_infer.so.8',
    'cudnn/lib/libcudnn_cnn_train.so.8',
    'cudnn/lib/libcudnn_adv_infer.so.8',
    'cudnn/lib/libcudnn_adv_train.so.8',
    'cudnn/lib/libcudnn.so.8',
    'nccl/lib/libnccl.so.2',
]


def make_site_packages(root, wheel_files=WHEEL_FILES):
    for package_dir, names in wheel_files.items():
        lib_dir = root / 'nvidia' / package_dir / 'lib'
        lib_dir.mkdir(parents=True, exist_ok=True)
        for name in names:
            (lib_dir / name).write_bytes(b'not a real library')
    return root


class RecordingLoader:
    """Stands in for ctypes.CDLL(..., RTLD_GLOBAL): no library resolves by bare soname unless
    listed in ``system``; paths are recorded and succeed."""

    def __init__(self, system=()):
        self.system = set(system)
        self.calls = []

    def __call__(self, name_or_path):
        self.calls.append(name_or_path)
        if os.sep in name_or_path:
            return object()
        if name_or_path in self.system:
            return object()
        raise OSError('%s: cannot open shared object file: No such file or directory'
                      % name_or_path)

    @property
    def paths(self):
        return [call for call in self.calls if os.sep in call]


def relative(paths, root):
    return [os.path.relpath(p, str(root / 'nvidia')) for p in paths]


def write_fake_elf(path, needed):
    """A minimal 64-bit little-endian ELF shared object whose .dynamic lists ``needed``."""
    strings, offsets = b'\0', []
    for name in needed:
        offsets.append(len(strings))
        strings += name.encode() + b'\0'
    dynamic = b''.join(struct.pack('<qQ', 1, offset) for offset in offsets)  # DT_NEEDED
    dynamic += struct.pack('<qQ', 0, 0)  # DT_NULL
    strings_offset = 64
    dynamic_offset = strings_offset + len(strings)
    sections_offset = dynamic_offset + len(dynamic)
    ident = b'\x7fELF' + bytes([2, 1, 1]) + b'\0' * 9
    header = ident + struct.pack('<HHIQQQIHHHHHH', 3, 62, 1, 0, 0, sections_offset, 0, 64,
                                 0, 0, 64, 3, 0)
    section = '<IIQQQQIIQQ'
    sections = struct.pack(section, *[0] * 10)
    sections += struct.pack(section, 0, 3, 0, 0, strings_offset, len(strings), 0, 0, 1, 0)
    sections += struct.pack(section, 0, 6, 0, 0, dynamic_offset, len(dynamic), 1, 0, 8, 16)
    with open(path, 'wb') as f:
        f.write(header + strings + dynamic + sections)
    return str(path)


CUDA_LIBMXNET_NEEDS = ['libdl.so.2', 'libcudart.so.11.0', 'libcublas.so.11', 'libcudnn.so.8',
                       'libcuda.so.1', 'libc.so.6']
CPU_LIBMXNET_NEEDS = ['libdl.so.2', 'libopenblas.so.0', 'libgomp.so.1', 'libc.so.6']


def test_loads_every_wheel_library_in_dependency_order(tmp_path):
    site_packages = make_site_packages(tmp_path / 'site-packages')
    loader = RecordingLoader()
    report = cuda.preload_cuda_libraries(search_roots=[str(site_packages)], load_library=loader,
                                         cuda_build=True, environ={})
    assert relative(loader.paths, site_packages) == EXPECTED_LOAD_ORDER
    assert report.status == 'done'
    assert [lib.path for lib in report.loaded] == loader.paths
    assert all(lib.source == 'wheel' for lib in report.loaded)
    assert report.missing == [] and report.failed == []
    # Each wheel's main library was first asked of the system loader, the driver last.
    bare_names = [call for call in loader.calls if os.sep not in call]
    assert bare_names == [wheel.main_library for wheel in cuda.CUDA11_WHEELS] + ['libcuda.so.1']
    assert report.driver_loadable is False
    assert cuda.preload_report is report


def test_reports_missing_libraries_with_their_wheel(tmp_path):
    site_packages = make_site_packages(tmp_path / 'site-packages', {
        'cuda_runtime': ['libcudart.so.11.0'],
        'cublas': ['libcublas.so.11'],  # libcublasLt.so.11 absent
        'cudnn': ['libcudnn.so.8'],  # sub-libraries are optional (cuDNN < 8 has none)
    })
    loader = RecordingLoader()
    report = cuda.preload_cuda_libraries(search_roots=[str(site_packages)], load_library=loader,
                                         cuda_build=True, environ={})
    assert relative(loader.paths, site_packages) == [
        'cuda_runtime/lib/libcudart.so.11.0', 'cublas/lib/libcublas.so.11',
        'cudnn/lib/libcudnn.so.8']
    assert [(m.name, m.pip_name) for m in report.missing] == [
        ('libnvToolsExt.so.1', 'nvidia-nvtx-cu11'),
        ('libcublasLt.so.11', 'nvidia-cublas-cu11'),
        ('libcufft.so.10', 'nvidia-cufft-cu11'),
        ('libcurand.so.10', 'nvidia-curand-cu11'),
        ('libcusolver.so.11', 'nvidia-cusolver-cu11'),
        ('libnvrtc.so.11.2', 'nvidia-cuda-nvrtc-cu11'),
        ('libnccl.so.2', 'nvidia-nccl-cu11'),
    ]
    # Without libmxnet.so's NEEDED list every missing library may be needed.
    assert all(m.needed_by_mxnet is None for m in report.missing)
    assert report.blocking_missing == report.missing


def test_system_copy_wins_for_the_whole_wheel(tmp_path):
    site_packages = make_site_packages(tmp_path / 'site-packages')
    loader = RecordingLoader(system={'libcudnn.so.8', 'libcublas.so.11'})
    report = cuda.preload_cuda_libraries(search_roots=[str(site_packages)], load_library=loader,
                                         cuda_build=True, environ={})
    loaded = relative(loader.paths, site_packages)
    assert not [p for p in loaded if p.startswith(('cudnn/', 'cublas/'))]
    assert loaded == [p for p in EXPECTED_LOAD_ORDER if not p.startswith(('cudnn/', 'cublas/'))]
    assert [(lib.name, lib.source) for lib in report.loaded if lib.source == 'system'] == [
        ('libcublas.so.11', 'system'), ('libcudnn.so.8', 'system')]


def test_first_search_root_wins(tmp_path):
    first = make_site_packages(tmp_path / 'first', {'cuda_runtime': ['libcudart.so.11.0']})
    second = make_site_packages(tmp_path / 'second')
    loader = RecordingLoader()
    cuda.preload_cuda_libraries(search_roots=[str(tmp_path / 'nonexistent'), str(first),
                                              str(second)],
                                load_library=loader, cuda_build=True, environ={})
    assert loader.paths[0] == str(first / 'nvidia' / 'cuda_runtime' / 'lib' / 'libcudart.so.11.0')
    assert loader.paths[1:] == [str(second / 'nvidia' / p) for p in EXPECTED_LOAD_ORDER[1:]]


def test_unloadable_file_is_reported_as_failed(tmp_path):
    site_packages = make_site_packages(tmp_path / 'site-packages',
                                       {'cuda_runtime': ['libcudart.so.11.0'],
                                        'nccl': ['libnccl.so.2']})

    def loader(name_or_path):
        if name_or_path.endswith('libnccl.so.2') and os.sep in name_or_path:
            raise OSError('%s: invalid ELF header' % name_or_path)
        return RecordingLoader()(name_or_path)

    report = cuda.preload_cuda_libraries(search_roots=[str(site_packages)], load_library=loader,
                                         cuda_build=True, environ={})
    assert [(f.name, f.error) for f in report.failed] == [
        ('libnccl.so.2', '%s: invalid ELF header'
         % (site_packages / 'nvidia' / 'nccl' / 'lib' / 'libnccl.so.2'))]
    assert [lib.name for lib in report.loaded] == ['libcudart.so.11.0']


def test_cpu_build_loads_nothing(tmp_path):
    site_packages = make_site_packages(tmp_path / 'site-packages')
    loader = RecordingLoader()
    report = cuda.preload_cuda_libraries(search_roots=[str(site_packages)], load_library=loader,
                                         cuda_build=False, environ={})
    assert loader.calls == []
    assert report.status == 'skipped' and 'not a CUDA build' in report.reason


def test_cpu_libmxnet_detected_from_its_needed_entries(tmp_path):
    site_packages = make_site_packages(tmp_path / 'site-packages')
    libmxnet = write_fake_elf(tmp_path / 'libmxnet.so', CPU_LIBMXNET_NEEDS)
    loader = RecordingLoader()
    report = cuda.preload_cuda_libraries(search_roots=[str(site_packages)], load_library=loader,
                                         environ={'MXNET_LIBRARY_PATH': libmxnet})
    assert loader.calls == []
    assert report.cuda_build is False and report.mxnet_library == libmxnet
    assert report.reason == ('MXNet is not a CUDA build (%s does not link against libcudart)'
                             % libmxnet)


def test_cuda_libmxnet_detected_and_needs_decide_what_is_blocking(tmp_path):
    site_packages = make_site_packages(tmp_path / 'site-packages',
                                       {'cuda_runtime': ['libcudart.so.11.0']})
    libmxnet = write_fake_elf(tmp_path / 'libmxnet.so', CUDA_LIBMXNET_NEEDS)
    loader = RecordingLoader()
    report = cuda.preload_cuda_libraries(search_roots=[str(site_packages)], load_library=loader,
                                         environ={'MXNET_LIBRARY_PATH': libmxnet})
    assert report.cuda_build is True
    assert report.build_evidence == '%s links against libcudart.so.11.0' % libmxnet
    assert report.mxnet_cuda_needs == ['libcudart.so.11.0', 'libcublas.so.11', 'libcudnn.so.8',
                                       'libcuda.so.1']
    assert relative(loader.paths, site_packages) == ['cuda_runtime/lib/libcudart.so.11.0']
    assert [m.name for m in report.blocking_missing] == [
        'libcublasLt.so.11', 'libcublas.so.11', 'libcudnn.so.8']
    not_needed = {m.name for m in report.missing if m.needed_by_mxnet is False}
    assert not_needed == {'libnvToolsExt.so.1', 'libcufft.so.10', 'libcurand.so.10',
                          'libcusolver.so.11', 'libnvrtc.so.11.2', 'libnccl.so.2'}


def test_skip_env_var_turns_preloading_off(tmp_path):
    site_packages = make_site_packages(tmp_path / 'site-packages')
    loader = RecordingLoader()
    report = cuda.preload_cuda_libraries(search_roots=[str(site_packages)], load_library=loader,
                                         cuda_build=True,
                                         environ={'GLUONSEG_SKIP_CUDA_PRELOAD': '1'})
    assert loader.calls == []
    assert report.status == 'skipped'
    assert report.reason == 'GLUONSEG_SKIP_CUDA_PRELOAD=1 is set'


def test_unexpected_errors_are_recorded_not_raised(tmp_path):
    site_packages = make_site_packages(tmp_path / 'site-packages')

    def broken_loader(name_or_path):
        raise RuntimeError('loader exploded')

    report = cuda.preload_cuda_libraries(search_roots=[str(site_packages)],
                                         load_library=broken_loader, cuda_build=True, environ={})
    assert report.status == 'error'
    assert report.error == 'RuntimeError: loader exploded'


def test_default_search_roots_cover_site_packages_and_sys_path():
    import site
    roots = cuda.default_search_roots()
    for expected in site.getsitepackages() + [site.getusersitepackages()] + sys.path:
        assert os.path.abspath(expected or os.curdir) in roots
    assert len(roots) == len(set(roots))
    assert roots.index(os.path.abspath(site.getsitepackages()[0])) == 0


def test_read_elf_needed(tmp_path):
    assert cuda.read_elf_needed(write_fake_elf(tmp_path / 'a.so', CUDA_LIBMXNET_NEEDS)) == \
        CUDA_LIBMXNET_NEEDS
    not_elf = tmp_path / 'not_elf.so'
    not_elf.write_bytes(b'not a real library')
    with pytest.raises(ValueError, match='is not an ELF file'):
        cuda.read_elf_needed(str(not_elf))


def test_read_elf_needed_on_installed_libmxnet():
    libmxnet = cuda.find_mxnet_library(environ={})
    if libmxnet is None:
        pytest.skip('mxnet is not installed')
    needed = cuda.read_elf_needed(libmxnet)
    assert 'libc.so.6' in needed or any(n.startswith('libc.') for n in needed)


IMPORT_GLUONSEG_SCRIPT = r"""
import ctypes, json, sys, traceback
opened = []
real_cdll = ctypes.CDLL
class RecordingCDLL(real_cdll):
    def __init__(self, name, *args, **kwargs):
        if sys._getframe(1).f_code.co_filename.endswith('_cuda.py'):
            opened.append(name)
        super().__init__(name, *args, **kwargs)
ctypes.CDLL = RecordingCDLL
try:
    import gluonseg
except Exception:
    # Only the preload is under test; mxnet cannot load the fake libmxnet.so afterwards.
    traceback.print_exc()
report = sys.modules['gluonseg._cuda'].preload_report
print(json.dumps({'opened': opened, 'status': report.status, 'reason': report.reason}))
"""


@pytest.mark.parametrize('skip', ['1', None])
def test_importing_gluonseg_with_skip_env_var_does_not_load(tmp_path, skip):
    # libmxnet.so is faked as a CUDA build, so the environment variable is the only reason for
    # loading nothing; ctypes.CDLL is wrapped before gluonseg is imported to record what
    # gluonseg/_cuda.py opens.
    libmxnet = write_fake_elf(tmp_path / 'libmxnet.so', CUDA_LIBMXNET_NEEDS)
    env = dict(os.environ, PYTHONPATH=REPO_ROOT, MXNET_LIBRARY_PATH=libmxnet)
    env.pop('GLUONSEG_SKIP_CUDA_PRELOAD', None)
    if skip:
        env['GLUONSEG_SKIP_CUDA_PRELOAD'] = skip
    result = subprocess.run([sys.executable, '-c', IMPORT_GLUONSEG_SCRIPT], env=env,
                            cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    if skip:
        assert outcome == {'opened': [], 'status': 'skipped',
                           'reason': 'GLUONSEG_SKIP_CUDA_PRELOAD=1 is set'}
    else:  # control: the same import without the variable does try to load
        assert outcome['status'] == 'done'
        assert outcome['opened'][0] == 'libcudart.so.11.0'


def _compile_shared_library(compiler, lib_dir, soname, link=()):
    source = lib_dir / ('%s.c' % soname.replace('.', '_').replace('-', '_'))
    symbol = 'fake_' + soname.split('.')[0].replace('-', '_')
    source.write_text('int %s(void) { return 0; }\n' % symbol)
    command = [compiler, '-shared', '-fPIC', '-o', str(lib_dir / soname), str(source),
               '-Wl,-soname,%s' % soname, '-Wl,--no-as-needed']
    # Linked without an rpath: loading it succeeds only if its dependency is already loaded.
    command += ['-L%s' % d for d, _ in link] + ['-l:%s' % name for _, name in link]
    subprocess.run(command, check=True, capture_output=True)
    source.unlink()


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='ELF/dlopen test')
def test_real_dlopen_order_satisfies_dependencies(tmp_path):
    compiler = shutil.which('cc') or shutil.which('gcc')
    if compiler is None:
        pytest.skip('no C compiler to build fake CUDA libraries')
    site_packages = tmp_path / 'site-packages'
    libs = {}
    for package_dir, names in WHEEL_FILES.items():
        lib_dir = site_packages / 'nvidia' / package_dir / 'lib'
        lib_dir.mkdir(parents=True)
        libs.update((name, lib_dir) for name in names)
    dependencies = {
        'libcublas.so.11': ['libcublasLt.so.11'],
        'libcusolver.so.11': ['libcublas.so.11', 'libcublasLt.so.11'],
        'libcudnn_ops_train.so.8': ['libcudnn_ops_infer.so.8'],
        'libcudnn_cnn_infer.so.8': ['libcudnn_ops_infer.so.8'],
        'libcudnn.so.8': ['libcudnn_ops_infer.so.8', 'libcudnn_cnn_infer.so.8'],
    }
    built = set()
    order = ['libcublasLt.so.11', 'libcublas.so.11', 'libcudnn_ops_infer.so.8',
             'libcudnn_cnn_infer.so.8'] + sorted(libs)
    for name in order:
        if name not in built:
            link = [(libs[dep], dep) for dep in dependencies.get(name, [])]
            _compile_shared_library(compiler, libs[name], name, link)
            built.add(name)
    script = r'''
import ctypes, importlib.util, json, sys
spec = importlib.util.spec_from_file_location('c', sys.argv[1])
cuda = importlib.util.module_from_spec(spec)
spec.loader.exec_module(cuda)
try:
    ctypes.CDLL(sys.argv[3] + '/nvidia/cublas/lib/libcublas.so.11')
    alone = 'loaded'
except OSError as exc:
    alone = str(exc)
report = cuda.preload_cuda_libraries(search_roots=[sys.argv[2]], cuda_build=True, environ={})
print(json.dumps({'alone': alone, 'report': report.as_dict()}))
'''
    result = subprocess.run(
        [sys.executable, '-c', script, os.path.join(REPO_ROOT, 'gluonseg', '_cuda.py'),
         str(site_packages), str(site_packages)],
        capture_output=True, text=True, timeout=120, env=dict(os.environ, LD_LIBRARY_PATH=''))
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    # Control: cuBLAS cannot be loaded before cuBLASLt, so the order below is what made it work.
    assert 'libcublasLt.so.11' in outcome['alone']
    report = outcome['report']
    assert report['status'] == 'done' and report['failed'] == [] and report['missing'] == []
    assert [os.path.relpath(lib['path'], str(site_packages / 'nvidia'))
            for lib in report['loaded']] == EXPECTED_LOAD_ORDER
