"""A throwaway PostgreSQL cluster in a temp dir (initdb + pg_ctl on a free port), for the entity tests.

`initdb` and `postgres` refuse to run as root: as root, the cluster runs as the `postgres` system user
(Debian's postgresql package creates it) or `nobody`. Found through PATH, else /usr/lib/postgresql/*/bin.
Reusable from other test folders: `from pg_cluster import PostgresCluster` after putting this folder on
sys.path (tests/entities/conftest.py does the rest).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from meterstream.deploy.ports import free_port


def pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(found).resolve().parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "pg_ctl").exists() and Path(folder, "initdb").exists():
            return Path(folder)
    return None


class PostgresCluster:
    def __init__(self, base: Path | None = None) -> None:
        self.bin = pg_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl; Debian: apt-get install postgresql-15)")
        # not under pytest's basetemp: another pytest run resets /tmp/pytest-of-<user> to 0700 (and prunes old
        # runs), after which a server running as another user can no longer reach its own data folder
        self.base = base or Path(tempfile.mkdtemp(prefix="meterstream-pg-"))
        self.owned = base is None
        self.data = self.base / "data"
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    pwd.getpwnam(name)
                except KeyError:
                    continue
                self.user = name
                break

    def _run(self, *args: str) -> None:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", self.user, "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "meterstream", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "log"), "-o", options, "-w", "start")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            pass
        if self.owned:
            shutil.rmtree(self.base, ignore_errors=True)
        else:  # a folder the caller gave: remove what the cluster put there
            shutil.rmtree(self.data, ignore_errors=True)
            (self.base / "log").unlink(missing_ok=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://meterstream@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A fresh, empty database; returns its SQLAlchemy URL."""
        from sqlalchemy import create_engine, text

        name = f"t_{uuid.uuid4().hex[:12]}"
        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        return self.url(name)

    def drop_database(self, url: str) -> None:
        from sqlalchemy import create_engine, text

        name = url.rsplit("/", 1)[1]
        admin = create_engine(self.url(), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
