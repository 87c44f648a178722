"""Shared pytest fixtures and hooks."""
import ctypes
import gc
import os
import resource
import socket
import sys
import threading
import time
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

# Read when mxnet starts, so set before any test imports it. MXNet keeps, for the life of the
# process, each temporary workspace at the largest size an operator asked of it (4 copies by
# default) and each oneDNN primitive it built, with its scratch memory, per shape and thread:
# hundreds of MB each after a 1000-proposal Mask R-CNN forward. One workspace, and one cached
# primitive per operator kind, keep that bounded; tests rarely repeat a shape, and oneDNN's
# own primitive cache makes rebuilding one cheap.
os.environ.setdefault('MXNET_CPU_TEMP_COPY', '1')
os.environ.setdefault('MXNET_MKLDNN_CACHE_NUM', '1')

ServedRequest = namedtuple('ServedRequest', 'path range_start status sent fault')


class FileServer:
    """A local HTTP server serving bytes that a test registers, with switchable faults.

    ``add_faults(path, *faults)`` queues faults, consumed one per request to ``path``:

    * an int (404, 500, ...): answer with that status;
    * ``'truncate'``: announce the full Content-Length but send only half the body;
    * ``'corrupt'``: send the body with its bytes flipped (same length);
    * ``'ignore_range'``: answer 200 with the whole body even to a Range request;
    * ``'drop'``: close the connection without answering.

    ``chunk_delay`` slows the transfer (seconds between 16 KiB chunks). ``served`` lists
    every request as a :class:`ServedRequest`.
    """

    CHUNK = 16 * 1024

    def __init__(self):
        self.files = {}
        self.faults = {}
        self.served = []
        self.chunk_delay = 0.0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(('127.0.0.1', 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.app = self
        self.port = self._httpd.server_address[1]
        # A short poll interval keeps shutdown() (and each test's teardown) fast.
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={'poll_interval': 0.02}, daemon=True)
        self._thread.start()

    def url(self, path='/'):
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    def add(self, path, data):
        self.files[path] = bytes(data)
        return self.url(path)

    def add_faults(self, path, *faults):
        with self._lock:
            self.faults.setdefault(path, []).extend(faults)

    def requests_for(self, path):
        return [r for r in self.served if r.path == path]

    def full_transfers(self, path):
        """Answers that sent the whole (correct-length) file from byte 0."""
        size = len(self.files[path])
        return sum(1 for r in self.requests_for(path)
                   if r.status == 200 and r.sent == size and r.fault is None)

    def close(self):
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next_fault(self, path):
        with self._lock:
            queue = self.faults.get(path)
            return queue.pop(0) if queue else None

    def _record(self, *fields):
        with self._lock:
            self.served.append(ServedRequest(*fields))


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: the connection closes after each answer, so a short body is seen as truncated.
    protocol_version = 'HTTP/1.0'

    def log_message(self, *args):
        pass

    def do_GET(self):
        app = self.server.app
        path = self.path.split('?')[0]
        fault = app._next_fault(path)
        range_header = self.headers.get('Range')
        start = int(range_header.split('=')[1].split('-')[0]) if range_header else None
        data = app.files.get(path)
        if fault == 'drop':
            app._record(path, start, None, 0, fault)
            self.close_connection = True
            return
        if isinstance(fault, int) or data is None:
            status = fault if isinstance(fault, int) else 404
            app._record(path, start, status, 0, fault)
            self.send_error(status)
            return
        if fault == 'corrupt':
            data = bytes(b ^ 0xFF for b in data)
        if start is not None and fault != 'ignore_range':
            if start >= len(data):
                app._record(path, start, 416, 0, fault)
                self.send_error(416)
                return
            status, body = 206, data[start:]
        else:
            status, body = 200, data
        to_send = body[:len(body) // 2] if fault == 'truncate' else body
        # Recorded before sending: the client may be done before this thread finishes.
        app._record(path, start, status, len(to_send), fault)
        self.send_response(status)
        self.send_header('Content-Type', 'application/octet-stream')
        self.send_header('Content-Length', str(len(body)))
        if status == 206:
            self.send_header('Content-Range', 'bytes %d-%d/%d'
                             % (start, len(data) - 1, len(data)))
        self.end_headers()
        try:
            for i in range(0, len(to_send), FileServer.CHUNK):
                self.wfile.write(to_send[i:i + FileServer.CHUNK])
                if app.chunk_delay:
                    time.sleep(app.chunk_delay)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def file_server(monkeypatch):
    """A :class:`FileServer` on 127.0.0.1 (ephemeral port) for the duration of a test."""
    # Never route the local server through a proxy from the environment.
    monkeypatch.setenv('NO_PROXY', '127.0.0.1,localhost')
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def closed_port_url():
    """Base URL of a 127.0.0.1 port nobody listens on (connections are refused)."""
    sock = socket.socket()
    sock.bind(('127.0.0.1', 0))
    port = sock.getsockname()[1]
    sock.close()
    return 'http://127.0.0.1:%d/' % port


@pytest.fixture(scope='session')
def shapes_fcn(tmp_path_factory):
    """Random weights of the small Shapes FCN (4 classes, all valid VOC ids; no aux head):
    the net and a .params file of it. Session-wide: tests only read it."""
    # Imported here: several test modules never load mxnet and should not pay for it.
    import mxnet as mx

    import gluonseg
    mx.random.seed(0)
    net = gluonseg.get_model('fcn_resnet18_shapes', pretrained_base=False, aux=False)
    net(mx.nd.zeros((1, 3, 32, 32)))
    path = str(tmp_path_factory.mktemp('shapes_fcn') / 'fcn_resnet18_shapes.params')
    net.save_parameters(path)
    return net, path


# Fault injection: each test marked ``@pytest.mark.fault('what was injected')`` injects one
# fault as a user meets it and asserts that nothing was lost and the error names the cause.
# The run ends with one line a reader can take in, listing any fault that was not survived.
_FAULT_RESULTS = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marker = item.get_closest_marker('fault')
    if marker is None:
        return
    what = marker.args[0] if marker.args else item.name
    # A fault survives when setup, call and teardown all pass; a skipped test is not counted.
    if report.failed:
        _FAULT_RESULTS[item.nodeid] = (what, False)
    elif report.when == 'call' and report.passed:
        _FAULT_RESULTS.setdefault(item.nodeid, (what, True))


def pytest_sessionstart(session):
    session.config.gluonseg_start = time.time()


def pytest_terminal_summary(terminalreporter, config):
    # The run's cost, in every log (.ci/run's included): wall time and peak resident memory.
    minutes, seconds = divmod(time.time() - config.gluonseg_start, 60)
    # ru_maxrss is in KiB on Linux, in bytes on macOS
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_gb = peak * (1 if sys.platform == 'darwin' else 1024) / 1e9
    terminalreporter.write_sep('-', 'wall time %d:%02d, peak RSS of the pytest process %.2f GB'
                               % (minutes, seconds, peak_gb))
    _rss_report(terminalreporter)
    if not _FAULT_RESULTS:
        return
    lost = [what for what, survived in _FAULT_RESULTS.values() if not survived]
    line = ('fault injection: %d faults injected, %d survived, '
            % (len(_FAULT_RESULTS), len(_FAULT_RESULTS) - len(lost)))
    terminalreporter.write_sep('-', line + ('nothing lost' if not lost else
                                            '%d NOT survived' % len(lost)))
    for what in lost:
        terminalreporter.write_line('  not survived: %s' % what)


class _TrickleWriter:
    """Wraps a handler's ``wfile``: the first write (status line and headers, which
    ``end_headers`` writes at once) goes out whole, later bytes one at a time, each followed
    by ``app.trickle_delay`` seconds of sleep (whole again when it is 0)."""

    def __init__(self, wfile, app):
        self._wfile, self._app, self._headers_sent = wfile, app, False

    def write(self, data):
        if not self._headers_sent or not self._app.trickle_delay:
            self._headers_sent = True
            return self._wfile.write(data)
        for i in range(len(data)):
            self._wfile.write(data[i:i + 1])
            time.sleep(self._app.trickle_delay)
        return len(data)

    def __getattr__(self, name):
        return getattr(self._wfile, name)


class _TrickleHandler(_Handler):
    def setup(self):
        super().setup()
        self.wfile = _TrickleWriter(self.wfile, self.server.app)


@pytest.fixture
def trickle_server(file_server):
    """The :class:`FileServer` of ``file_server``, sending every body one byte every
    ``trickle_delay`` seconds (0.05; set it to 0 to serve normally again): a server that
    never goes silent long enough for a read timeout, yet never finishes."""
    file_server.trickle_delay = 0.05
    file_server._httpd.RequestHandlerClass = _TrickleHandler
    return file_server


# Memory of finished tests is given back: Gluon blocks live in reference cycles, which only
# the cycle collector frees; MXNet runs operations asynchronously, so a dropped network whose
# initialization is still queued (a test that never reads it) holds its memory until the
# engine is waited for; glibc keeps freed memory in its arenas unless trimmed. Without this
# the default run grew to ~14 GB. A collection takes ~0.1 s, so it runs at each module's end
# (its module fixtures are gone then) and when the process grew by RELEASE_AFTER_MIB since.
RELEASE_AFTER_MIB = 200
_released_at_mib = [0]
try:
    _malloc_trim = ctypes.CDLL('libc.so.6').malloc_trim
except (OSError, AttributeError):   # not glibc: its allocator has nothing to trim here
    _malloc_trim = None


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    mx = sys.modules.get('mxnet')   # a test run that never loaded mxnet has nothing to free
    if mx is None:
        return
    module_ends = nextitem is None or nextitem.module is not item.module
    if module_ends or _proc_status_mib('VmRSS')[0] > _released_at_mib[0] + RELEASE_AFTER_MIB:
        gc.collect()
        mx.nd.waitall()
        if _malloc_trim is not None:
            _malloc_trim(0)
        _released_at_mib[0] = _proc_status_mib('VmRSS')[0]


# Memory report: with GLUONSEG_TEST_RSS=1 the run records this process's resident memory
# (VmRSS) and its peak (VmHWM) after each test and prints the tests and modules that grew it.
_RSS_TRACE = []


def _proc_status_mib(*fields):
    """Fields of /proc/self/status in MiB (0 where there is no /proc: not Linux)."""
    try:
        with open('/proc/self/status') as status:
            values = dict(line.split(':', 1) for line in status)
    except OSError:
        return (0,) * len(fields)
    return tuple(int(values[field].split()[0]) // 1024 for field in fields)


@pytest.hookimpl(trylast=True)
def pytest_runtest_logfinish(nodeid, location):
    if os.environ.get('GLUONSEG_TEST_RSS') == '1':
        _RSS_TRACE.append((nodeid,) + _proc_status_mib('VmRSS', 'VmHWM'))


def _rss_report(terminalreporter):
    if not _RSS_TRACE:
        return
    write = terminalreporter.write_line
    terminalreporter.write_sep('-', 'resident memory (MiB): final %d, peak %d'
                               % _RSS_TRACE[-1][1:])
    rows, previous, prev_peak = [], 0, 0
    for nodeid, rss, peak in _RSS_TRACE:
        rows.append((rss - previous, peak - prev_peak, rss, nodeid))
        previous, prev_peak = rss, peak
    write('top tests by growth of RSS (grow, peak grow, rss after, test):')
    for row in sorted(rows, reverse=True)[:15]:
        write('  %+6d %+6d %6d  %s' % row)
    modules = {}
    for grow, peak_grow, rss, nodeid in rows:
        entry = modules.setdefault(nodeid.split('::')[0], [0, 0, 0])
        entry[0] += grow
        entry[1] += peak_grow
        entry[2] = rss
    write('modules (grow, peak grow, rss after its last test):')
    for module, (grow, peak_grow, rss) in modules.items():
        write('  %+6d %+6d %6d  %s' % (grow, peak_grow, rss, module))
