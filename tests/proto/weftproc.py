"""Start and stop a real weft binary for the protocol tests."""
import os
import random
import socket
import subprocess
import tempfile
import time


class Weft:
    def __init__(self, binary, data_dir=None, args=()):
        self.binary = binary
        self.tmp = tempfile.mkdtemp(prefix="weft-test-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.args = list(args)
        self.port = random.randint(20000, 40000)
        self.proc = None
        self.log = os.path.join(self.tmp, "server.log")

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--port", str(self.port), "--data-dir", self.data_dir] + self.args,
            stdout=logf, stderr=logf)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError("weft exited at start-up: " + open(self.log).read()[-2000:])
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
