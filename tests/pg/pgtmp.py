"""A throwaway Postgres for the tests: Debian's postgresql binaries, a
cluster in a temporary directory (owned by the postgres user: Postgres
refuses to run as root), wal_level = logical, C collation, listening on
loopback at a free port. Used as a context manager, or from the shell:

    python3 tests/pg/pgtmp.py -- COMMAND ...   runs COMMAND with WEFT_TEST_DATABASE_URL set
                                               (and WEFT_TEST_PG_RESTART, a command restarting it)
"""
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time


def _bin(name):
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/" + name))
    if not found:
        raise RuntimeError("Postgres is not installed: scripts/setup.sh installs Debian's postgresql")
    return found[-1]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TempPostgres:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="weft-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = _free_port()
        self.user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        self.url = "postgresql://postgres@127.0.0.1:%d/postgres" % self.port

    def _run(self, *args, **kw):
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)

    def start(self):
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run(_bin("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust", "--locale=C", "-E", "UTF8")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = '%s'\n"
                    "wal_level = logical\nmax_replication_slots = 10\nmax_wal_senders = 10\nfsync = off\n"
                    % (self.port, self.dir))
        self._run(_bin("pg_ctl"), "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "start")
        return self

    def stop(self):
        try:
            self._run(_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    with TempPostgres() as pg:
        restart = [_bin("pg_ctl"), "-D", pg.data, "-l", os.path.join(pg.dir, "log"), "-w", "restart"]
        if os.geteuid() == 0:
            restart = ["runuser", "-u", "postgres", "--"] + restart
        # WEFT_TEST_PG_RESTART: a command (JSON array) that restarts this Postgres
        env = dict(os.environ, WEFT_TEST_DATABASE_URL=pg.url, WEFT_TEST_PG_RESTART=json.dumps(restart))
        sys.exit(subprocess.run(argv, env=env).returncode)
