"""Starting and stopping the real nmdb server for the tests.

The server listens on TCP and UDP on 127.0.0.1 with ports chosen by the
kernel (``-t 0 -u 0``); it logs the ports it got and then "ready", and the
tests wait for that line instead of sleeping.
"""

import os
import re
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_READY_TIMEOUT = 60  # seconds; RocksDB opens slowly on a loaded machine
_STOP_TIMEOUT = 30
_LISTEN = re.compile(r"listening on (tcp|udp) \S*:(\d+)$", re.MULTILINE)
_METRICS = re.compile(r"listening on metrics \[?([^\s\]]+)\]?:(\d+)$", re.MULTILINE)


def release_dirs():
    """Where cargo puts release builds: $CARGO_TARGET_DIR, then ./target.

    Absolute, so that a relative CARGO_TARGET_DIR still names the build
    after a test changes directory or links to it from elsewhere.
    """
    dirs = []
    if os.environ.get("CARGO_TARGET_DIR"):
        dirs.append(Path(os.environ["CARGO_TARGET_DIR"]).absolute() / "release")
    dirs.append(REPO / "target" / "release")
    return dirs


def find_built(env, name):
    """The path in env if set, else the first release dir holding name.

    Returns (path or None, list of what was tried) so that a failure can
    say exactly where it looked.
    """
    if os.environ.get(env):
        path = Path(os.environ[env]).absolute()
        return (path if path.is_file() else None), [f"{env}={path}"]
    tried = [str(d / name) for d in release_dirs()]
    for path in map(Path, tried):
        if path.is_file():
            return path, tried
    return None, tried


def _task_state(task):
    """A thread's state letter from /proc: the field after "(command)"."""
    return (task / "stat").read_text().rpartition(")")[2].split()[0]


class Server:
    """One nmdb process with its own database directory and log."""

    def __init__(self, binary, workdir, host="127.0.0.1", extra_args=()):
        """host: the loopback address to listen on (127.0.0.1 or ::1);
        extra_args: more options, e.g. ("--metrics", "127.0.0.1:0")."""
        self.binary = binary
        self.extra_args = list(extra_args)
        self.host = host
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log = self.workdir / "log"
        self.process = None
        self.tcp_port = self.udp_port = None
        # (host, port) of the metrics endpoint, when --metrics is given.
        self.metrics_address = None

    def start(self, tcp_port=0, udp_port=0):
        """Starts the server and waits until its log says it is ready; port
        0 lets the kernel choose."""
        # A restart appends to the same log: remember where this run starts.
        offset = self.log.stat().st_size if self.log.exists() else 0
        # fmt: off
        args = [
            str(self.binary), "-f", "--no-tipc", "--no-sctp",
            "-T", self.host, "-U", self.host, "-t", str(tcp_port), "-u", str(udp_port),
            "-d", str(self.workdir / "db"), "-o", str(self.log),
            *self.extra_args,
        ]
        # fmt: on
        stderr = open(self.workdir / "stderr", "ab")
        with stderr:
            self.process = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr
            )
        deadline = time.monotonic() + _READY_TIMEOUT
        while True:
            text = self.log.read_text(errors="replace")[offset:] if self.log.exists() else ""
            if re.search(r"\] ready$", text, re.MULTILINE):
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"nmdb exited with {self.process.returncode}:\n{self._output()}")
            if time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError(f"nmdb not ready after {_READY_TIMEOUT} s:\n{self._output()}")
            time.sleep(0.02)
        ports = dict((proto, int(port)) for proto, port in _LISTEN.findall(text))
        self.tcp_port, self.udp_port = ports["tcp"], ports["udp"]
        metrics = _METRICS.search(text)
        if metrics:
            self.metrics_address = (metrics.group(1), int(metrics.group(2)))
        return self

    def stop(self):
        """Stops the server with SIGTERM; returns its exit status."""
        if self.process is None:
            return None
        self.process.send_signal(signal.SIGTERM)
        try:
            status = self.process.wait(_STOP_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            self.process.kill()
            self.process.wait()
            raise RuntimeError(f"nmdb ignored SIGTERM for {_STOP_TIMEOUT} s") from e
        finally:
            self.process = None
        return status

    def pause(self):
        """Freezes the server (SIGSTOP): it stays bound but answers nothing.
        Returns once the kernel shows it stopped: the signal is delivered
        asynchronously, and a request sent before that would be answered."""
        self.process.send_signal(signal.SIGSTOP)
        tasks = Path(f"/proc/{self.process.pid}/task")
        deadline = time.monotonic() + _STOP_TIMEOUT
        while not all(_task_state(t) == "T" for t in tasks.iterdir()):
            if time.monotonic() > deadline:
                raise RuntimeError("nmdb did not stop on SIGSTOP")
            time.sleep(0.001)

    def resume(self):
        """Lets a paused server go on with what it received meanwhile."""
        self.process.send_signal(signal.SIGCONT)

    def address(self, transport):
        """(host, port) of this server over "tcp" or "udp"."""
        return self.host, {"tcp": self.tcp_port, "udp": self.udp_port}[transport]

    def _output(self):
        parts = []
        for name in ("log", "stderr"):
            path = self.workdir / name
            if path.exists():
                parts.append(f"--- {name}\n" + path.read_text(errors="replace"))
        return "\n".join(parts)
