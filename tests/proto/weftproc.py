"""Start and stop a real weft binary for the protocol tests."""
import os
import sys
import random
import shutil
import socket
import subprocess
import tempfile
import time


INSTANCES = []  # removed by Checks.finish when every check passed


class Weft:
    def __init__(self, binary, data_dir=None, args=(), preexec=None):
        INSTANCES.append(self)
        self.binary = binary
        self.preexec = preexec  # run in the child before exec (limits)
        self.tmp = tempfile.mkdtemp(prefix="weft-test-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.args = list(args)
        # Below the kernel's ephemeral range (32768+), where client sockets of
        # other tests could already hold the port.
        self.port = random.randint(10000, 32000)
        self.proc = None
        self.log = os.path.join(self.tmp, "server.log")

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--port", str(self.port), "--data-dir", self.data_dir] + self.args,
            stdout=logf, stderr=logf, preexec_fn=self.preexec)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    log = open(self.log).read()[-2000:]
                    if "Address already in use" in log and not getattr(self, "retried", False):
                        self.retried = True
                        self.port = random.randint(10000, 32000)
                        return self.start()
                    raise RuntimeError("weft exited at start-up: " + log)
                time.sleep(0.05)
        raise RuntimeError("weft did not start listening")

    def kill(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        return self.proc.wait(timeout=30)

    def log_tail(self, n=2000):
        with open(self.log, errors="replace") as f:
            return f.read()[-n:]


class Checks:
    """Assertions that count instead of stopping, ending in the suite's
    closing line "<name>: N passed, N failed"."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0

    def __call__(self, cond, msg):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", msg)

    def finish(self, weft=None):
        print("%s: %d passed, %d failed" % (self.name, self.passed, self.failed))
        if self.failed and weft is not None:
            print(weft.log_tail())
        if not self.failed:  # a failure keeps its servers' directories and logs to look at
            for w in INSTANCES:
                if w.proc and w.proc.poll() is None:
                    w.kill()
                shutil.rmtree(w.tmp, ignore_errors=True)
        sys.exit(1 if self.failed else 0)
