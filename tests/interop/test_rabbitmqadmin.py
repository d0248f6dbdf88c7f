"""``rabbitmqadmin``, both RabbitMQ's own (the 3.10 Python script, unchanged)
and Warren's (crates/warren-management/cli/rabbitmqadmin, a script of its own
that takes the same command lines and prints the same output, served by the
broker at ``/cli/rabbitmqadmin`` as RabbitMQ's management plugin serves its
script), against the broker's management HTTP API: listings in the table, tsv
and raw_json formats, declare/delete of every object type, publish/get,
purge, close, definitions export/import and policies.  Every command's effect
is checked independently, through pika or the management API
(tests/interop/mgmt.py).

The session fixture ``rabbitmqadmin_script`` is parametrized, so every test
runs once with each script: ``rabbitmq-script`` and ``warren-script``.

Getting RabbitMQ's script (the project does not carry a copy of it), in this
order:

* ``RABBITMQADMIN=/path/to/rabbitmqadmin`` if set (``RABBITMQADMIN=download``
  skips the next step, to exercise the download path on a machine that has it);
* ``rabbitmqadmin`` on PATH if it is the Python script (Debian/Ubuntu's
  rabbitmq-server package installs it as /usr/bin/rabbitmqadmin; the Rust
  rewrite of the same name is not it);
* a copy cached in ``.venv/rabbitmqadmin/`` (``RABBITMQADMIN_CACHE`` overrides
  the directory) by an earlier run;
* otherwise the Debian package, downloaded but not installed:
  ``apt-get download rabbitmq-server`` (after ``apt-get update`` if the
  package lists are empty; without root, into private lists under the cache
  directory), ``dpkg-deb -x``, and the script taken from
  ``usr/bin/rabbitmqadmin`` or the management plugin's
  ``priv/www/cli/rabbitmqadmin``.

If none works the tests fail (not skip) with what was tried.

Getting Warren's script: ``WARREN_RABBITMQADMIN=/path`` if set (e.g. the file
in the repository, to test it without a broker that serves it); otherwise it
is downloaded from the broker under test, ``http://HOST:MGMT/cli/rabbitmqadmin``
(the tests fail if the broker does not serve it).  A broker that is RabbitMQ
(``WARREN_BIN=tests/interop/rabbitmq-as-warren.sh``, or one that serves
RabbitMQ's script at that path) does not serve Warren's, so the file in the
repository is used: RabbitMQ's server must work with Warren's script too.

Both scripts run under the interop venv's Python (``sys.executable``), with
HOME pointed at an empty directory so a developer's ``~/.rabbitmqadmin.conf``
cannot interfere.  ``python tests/interop/test_rabbitmqadmin.py --fetch`` runs
only the lookup (and download) of RabbitMQ's script and prints the path.

What rabbitmqadmin sends (plain http.client, no Accept header): JSON bodies
built from ``key=value`` arguments, so booleans are the *strings* ``"true"`` /
``"false"`` (``durable``, ``auto_delete``, ``internal``) and ``get``'s
``count`` is the string ``"1"``; every body also carries ``"vhost"`` (the -V
vhost, or ``/``) even for users and vhosts.  Listings add
``?columns=a,b[&sort=k][&sort_reverse=true]`` (default columns per type,
dotted for nested keys such as ``queue_totals.messages``).  400 answers must
have a JSON ``reason`` (printed), 401 and 404 give "Access refused" / "Not
found" with exit code 1.  ``list policies`` ignores -V (``GET /api/policies``),
``export``/``import`` with -V use ``/api/definitions/{vhost}``.  In the table
format a JSON ``null`` in a listed column crashes RabbitMQ's script
(len(None)); Warren's shows an empty cell.  Warren's script sends the same
requests (method, path, query, headers, body), except that ``get`` keeps
``payload_file`` to itself.

What RabbitMQ 3.10 does with that (the assertions below): the strings
``"true"``/``"false"`` are booleans (other strings: 400 ``["not_boolean",
V]``); ``count`` (and ``truncate``) may be strings of digits; ``?columns=``
is applied by every listing rabbitmqadmin knows (queues, exchanges, bindings,
users, vhosts, permissions, connections, channels, consumers, nodes,
policies, the overview), so ``-f raw_json list users name tags`` prints only
``name`` and ``tags`` (dotted columns nest: ``queue.name`` ->
``{"queue": {"name": ...}}``; the overview filters only its top-level keys).
"""

from __future__ import annotations

import base64
import fcntl
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from mgmt import poll

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parent.parent
DEFAULT_CACHE = REPO_ROOT / ".venv" / "rabbitmqadmin"

# the first test may include the one-time download of the Debian package
pytestmark = pytest.mark.timeout(300)

CALL_TIMEOUT = 60.0    # one rabbitmqadmin process
APT_TIMEOUT = 300.0


# --- obtaining the script ---------------------------------------------------------------

class FetchError(RuntimeError):
    pass


def _run_logged(cmd: list[str], log: list[str], cwd: Optional[Path] = None,
                timeout: float = APT_TIMEOUT) -> bool:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.append(f"$ {' '.join(cmd)}\n  {exc}")
        return False
    tail = (r.stdout + r.stderr).strip().splitlines()[-6:]
    log.append(f"$ {' '.join(cmd)}  -> exit {r.returncode}\n  " + "\n  ".join(tail))
    return r.returncode == 0


def _is_python_script(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            head = f.read(200)
    except OSError:
        return False
    return head.startswith(b"#!") and b"python" in head.splitlines()[0]


def script_version(path: Path) -> str:
    """``rabbitmqadmin --version`` run under this Python, e.g. ``3.10.8``."""
    r = subprocess.run([sys.executable, str(path), "--version"], capture_output=True, text=True,
                       timeout=CALL_TIMEOUT, env=_script_env())
    out = r.stdout.strip()
    if r.returncode != 0 or not out.startswith("rabbitmqadmin "):
        raise FetchError(f"{path} --version (under {sys.executable}) gave exit {r.returncode}: "
                         f"{out!r} {r.stderr.strip()!r}")
    return out.split()[1]


def _download_deb(workdir: Path, cache: Path, log: list[str]) -> Path:
    apt = shutil.which("apt-get")
    if not apt or not shutil.which("dpkg-deb"):
        raise FetchError("apt-get/dpkg-deb not available to download the rabbitmq-server package")
    download = [apt, "download", "rabbitmq-server"]
    ok = _run_logged(download, log, cwd=workdir)
    if not ok and os.geteuid() == 0:
        # e.g. a fresh container whose package lists are empty
        ok = _run_logged([apt, "update", "-qq"], log) and _run_logged(download, log, cwd=workdir)
    if not ok:
        # not root (or the system lists are unusable): private package lists
        lists = cache / "apt-lists"
        (lists / "partial").mkdir(parents=True, exist_ok=True)
        opts = ["-o", f"Dir::State::Lists={lists}", "-o", "Dir::Cache::pkgcache=",
                "-o", "Dir::Cache::srcpkgcache=", "-o", "Debug::NoLocking=1"]
        ok = (_run_logged([apt, *opts, "update", "-qq"], log)
              and _run_logged([apt, *opts, "download", "rabbitmq-server"], log, cwd=workdir))
    debs = sorted(workdir.glob("rabbitmq-server_*.deb"))
    if not ok or not debs:
        raise FetchError("apt-get download rabbitmq-server failed")
    return debs[-1]


def _extract_script(deb: Path, workdir: Path, log: list[str]) -> Path:
    root = workdir / "root"
    if not _run_logged(["dpkg-deb", "-x", str(deb), str(root)], log):
        raise FetchError(f"dpkg-deb -x {deb.name} failed")
    candidates = [root / "usr" / "bin" / "rabbitmqadmin"]
    candidates += [Path(p) for p in sorted(glob.glob(str(
        root / "usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbitmq_management-*/priv/www/cli/rabbitmqadmin")))]
    for path in candidates:
        # /usr/bin/rabbitmqadmin may be a symlink to the absolute plugin path
        if path.is_file() and not path.is_symlink() and _is_python_script(path):
            return path
    raise FetchError(f"no rabbitmqadmin script in {deb.name} (looked at "
                     f"{', '.join(str(p.relative_to(root)) for p in candidates)})")


def fetch_rabbitmqadmin(cache: Path, log: Optional[list] = None) -> Path:
    """The script cached under ``cache``, downloading the Debian package the first time
    (the commands run and their output's tail are appended to ``log``)."""
    target = cache / "rabbitmqadmin"
    if target.is_file() and _is_python_script(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    log = [] if log is None else log
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent runs download once
        if target.is_file() and _is_python_script(target):
            return target
        with tempfile.TemporaryDirectory(prefix="download-", dir=cache) as tmp:
            workdir = Path(tmp)
            try:
                deb = _download_deb(workdir, cache, log)
                script = _extract_script(deb, workdir, log)
            except FetchError as exc:
                raise FetchError(f"{exc}\n" + "\n".join(log)) from None
            partial = cache / "rabbitmqadmin.partial"
            shutil.copyfile(script, partial)
            partial.chmod(0o755)
            (cache / "SOURCE").write_text(f"{deb.name} {script.relative_to(workdir / 'root')}\n")
            log.append(f"cached {script.relative_to(workdir / 'root')} of {deb.name} as {target}")
            os.replace(partial, target)
    return target


def locate_rabbitmqadmin(log: Optional[list] = None) -> Path:
    tried = []
    explicit = os.environ.get("RABBITMQADMIN", "").strip()
    if explicit and explicit != "download":
        path = Path(explicit)
        if not path.is_file():
            raise FetchError(f"RABBITMQADMIN={explicit} is not a file")
        return path
    if explicit != "download":
        found = shutil.which("rabbitmqadmin")
        if found and _is_python_script(Path(found)):
            return Path(found)
        tried.append(f"rabbitmqadmin on PATH: {found or 'none'}"
                     + (" (not the Python script)" if found else ""))
    cache = Path(os.environ.get("RABBITMQADMIN_CACHE", "").strip() or DEFAULT_CACHE)
    try:
        return fetch_rabbitmqadmin(cache, log)
    except FetchError as exc:
        tried.append(f"download into {cache}: {exc}")
    raise FetchError("could not obtain RabbitMQ's rabbitmqadmin script. Install rabbitmq-server "
                     "(Debian/Ubuntu), or set RABBITMQADMIN=/path/to/rabbitmqadmin. Tried:\n"
                     + "\n".join(tried))


# Warren's script, in the repository and as the broker serves it
WARREN_SCRIPT = REPO_ROOT / "crates" / "warren-management" / "cli" / "rabbitmqadmin"
WARREN_SCRIPT_MARK = b"Warren's command-line client"  # in its header
SERVED_PATH = "/cli/rabbitmqadmin"


def _broker_is_rabbitmq_stand_in() -> bool:
    return not os.environ.get("AMQP_URL") and \
        Path(os.environ.get("WARREN_BIN", "")).name == "rabbitmq-as-warren.sh"


def locate_warren_rabbitmqadmin(mgmt_url: str, workdir: Path) -> Path:
    """WARREN_RABBITMQADMIN if set, else the script the broker serves at /cli/rabbitmqadmin
    (saved under ``workdir``), else, for RabbitMQ, the repository's file."""
    explicit = os.environ.get("WARREN_RABBITMQADMIN", "").strip()
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FetchError(f"WARREN_RABBITMQADMIN={explicit} is not a file")
        return path
    url = mgmt_url.rstrip("/") + SERVED_PATH
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, b""
    except OSError as exc:
        raise FetchError(f"GET {url}: {exc}") from None
    if status == 200 and WARREN_SCRIPT_MARK in body[:2000]:
        path = workdir / "rabbitmqadmin"
        path.write_bytes(body)
        path.chmod(0o755)
        return path
    served_rabbitmqs = status == 200 and body.startswith(b"#!") and b"python" in body.split(b"\n", 1)[0]
    if served_rabbitmqs or _broker_is_rabbitmq_stand_in():
        # RabbitMQ: it serves its own script (or none); test Warren's against it from the repository
        return WARREN_SCRIPT
    what = f"HTTP {status}" + (", not Warren's script" if status == 200 else "")
    raise FetchError(f"the broker does not serve Warren's rabbitmqadmin at {url} ({what}); set "
                     f"WARREN_RABBITMQADMIN={WARREN_SCRIPT.relative_to(REPO_ROOT)} to test the file directly")


_HOME: list = []


def _script_env() -> dict:
    """The environment of the script: an empty HOME (no ~/.rabbitmqadmin.conf)."""
    if not _HOME:
        _HOME.append(tempfile.mkdtemp(prefix="rabbitmqadmin-home-"))
    env = {k: v for k, v in os.environ.items() if k != "USERPROFILE"}
    env.update(HOME=_HOME[0], PYTHONIOENCODING="utf-8", LC_ALL="C.UTF-8")
    return env


# --- running it ---------------------------------------------------------------------------

@dataclass
class Result:
    cmd: list
    returncode: int
    stdout: str
    stderr: str

    def __str__(self):
        return (f"$ rabbitmqadmin {' '.join(self.cmd)}\nexit {self.returncode}\n"
                f"--- stdout\n{self.stdout}--- stderr\n{self.stderr}")


class AdminError(AssertionError):
    pass


@dataclass
class Admin:
    """``rabbitmqadmin -H host -P port -u user -p password`` (one process per call)."""

    script: Path
    host: str
    port: int
    user: str
    password: str
    vhost: Optional[str] = None  # default -V
    calls: list = field(default_factory=list)

    def with_(self, **kw) -> "Admin":
        values = dict(script=self.script, host=self.host, port=self.port, user=self.user,
                      password=self.password, vhost=self.vhost)
        values.update(kw)
        return Admin(**values)

    def run(self, *args: str, vhost: Any = "default", fmt: Optional[str] = None,
            stdin: Optional[str] = None, check: bool = True, quiet: bool = False) -> Result:
        vhost = self.vhost if vhost == "default" else vhost
        opts = ["-H", self.host, "-P", str(self.port), "-u", self.user, "-p", self.password, "-t", "30"]
        if vhost is not None:
            opts += ["-V", vhost]
        if fmt is not None:
            opts += ["-f", fmt]
        if quiet:
            opts.append("-q")
        cmd = opts + list(args)
        proc = subprocess.run([sys.executable, str(self.script), *cmd], input=stdin, capture_output=True,
                              text=True, encoding="utf-8", timeout=CALL_TIMEOUT, env=_script_env())
        result = Result(cmd, proc.returncode, proc.stdout, proc.stderr)
        self.calls.append(result)
        if check and proc.returncode != 0:
            raise AdminError(f"rabbitmqadmin failed:\n{result}")
        return result

    def fails(self, *args: str, **kw) -> Result:
        result = self.run(*args, check=False, **kw)
        assert result.returncode == 1, f"expected exit 1:\n{result}"
        assert "Traceback" not in result.stderr, f"the script crashed:\n{result}"
        return result

    def json(self, *args: str, **kw) -> Any:
        result = self.run(*args, fmt="raw_json", **kw)
        try:
            return json.loads(result.stdout)
        except ValueError:
            raise AdminError(f"not JSON:\n{result}") from None

    def table(self, *args: str, **kw) -> list[dict]:
        """The default ascii table, as dicts of cell strings."""
        return parse_table(self.run(*args, fmt="table", **kw))

    def tsv(self, *args: str, **kw) -> list[dict]:
        return parse_tsv(self.run(*args, fmt="tsv", **kw))


def parse_table(result: Result) -> list[dict]:
    text = result.stdout
    if text.strip() == "No items":
        return []
    lines = text.splitlines()
    rows = [line for line in lines if line.startswith("|")]
    bars = [line for line in lines if line.startswith("+")]
    if len(bars) != 3 or len(rows) + 3 != len(lines):
        raise AdminError(f"not an ascii table:\n{result}")
    cells = [[c.strip() for c in row[1:-1].split("|")] for row in rows]
    header, body = cells[0], cells[1:]
    assert all(len(r) == len(header) for r in body), result
    return [dict(zip(header, r)) for r in body]


def parse_tsv(result: Result) -> list[dict]:
    text = result.stdout
    if text.strip() == "No items":
        return []
    lines = text.rstrip("\n").split("\n")
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    assert all(len(r) == len(header) for r in rows), result
    return [dict(zip(header, r)) for r in rows]


def q(name: str) -> str:
    return urllib.parse.quote(name, safe="")




def rows_by(rows: list[dict], key: str = "name") -> dict:
    return {r[key]: r for r in rows}


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="session", params=["rabbitmq", "warren"], ids=["rabbitmq-script", "warren-script"])
def rabbitmqadmin_script(request, mgmt, tmp_path_factory) -> Path:
    """RabbitMQ's script or Warren's (see the module docstring)."""
    error = None
    try:
        if request.param == "rabbitmq":
            path = locate_rabbitmqadmin()
        else:
            path = locate_warren_rabbitmqadmin(mgmt.base_url, tmp_path_factory.mktemp("warren-rabbitmqadmin"))
        version = script_version(path)
    except FetchError as exc:
        error = str(exc)
    if error is not None:
        pytest.fail(error, pytrace=False)
    if not version.startswith("3."):
        pytest.fail(f"{path} is rabbitmqadmin {version}, not a script compatible with RabbitMQ 3.x's",
                    pytrace=False)
    return path


def admin_for(script: Path, mgmt_url: str, user: str, password: str) -> Admin:
    parts = urllib.parse.urlsplit(mgmt_url)
    return Admin(script, parts.hostname or "127.0.0.1", parts.port or 15672, user, password)


@pytest.fixture
def admin(rabbitmqadmin_script, mgmt, vhost) -> Admin:
    """rabbitmqadmin as the broker's administrator, -V the test's fresh vhost."""
    return admin_for(rabbitmqadmin_script, mgmt.base_url, mgmt.user, mgmt.password).with_(vhost=vhost)


@pytest.fixture
def vconnect(pika_connect, vhost):
    return lambda **kw: pika_connect(virtual_host=vhost, **kw)


@pytest.fixture
def vch(vconnect):
    """A confirm-mode pika channel in the test's vhost."""
    channel = vconnect().channel()
    channel.confirm_delivery()
    return channel


@pytest.fixture
def doomed(mgmt):
    """Register users/vhosts that rabbitmqadmin creates, deleted after the test."""
    users, vhosts = [], []

    class Doomed:
        def user(self, name):
            users.append(name)
            return name

        def vhost(self, name):
            vhosts.append(name)
            return name

    yield Doomed()
    for name in users:
        mgmt.delete_user(name, missing_ok=True)
    for name in vhosts:
        mgmt.delete_vhost(name, missing_ok=True)


def passive_count(ch, queue: str) -> int:
    return ch.queue_declare(queue, passive=True).method.message_count


def queue_exists(vconnect, queue: str) -> bool:
    import pika.exceptions

    ch = vconnect().channel()
    try:
        ch.queue_declare(queue, passive=True)
        return True
    except pika.exceptions.ChannelClosedByBroker as exc:
        assert exc.reply_code == 404, exc
        return False


# --- queues ---------------------------------------------------------------------------------

def test_declare_queue_with_arguments_then_delete(admin, mgmt, vhost, uid, vconnect):
    name = f"{uid}.q"
    out = admin.run("declare", "queue", f"name={name}", "durable=false",
                    'arguments={"x-max-length": 10, "x-message-ttl": 60000, "x-queue-mode": "lazy"}')
    assert out.stdout == "queue declared\n"
    got = mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}")
    assert got.status == 200, got.body
    assert (got.body["durable"], got.body["auto_delete"], got.body["exclusive"]) == (False, False, False)
    assert got.body["arguments"] == {"x-max-length": 10, "x-message-ttl": 60000, "x-queue-mode": "lazy"}
    # the same queue, equivalent over AMQP (the JSON integers are AMQP longs)
    ch = vconnect().channel()
    ok = ch.queue_declare(name, durable=False,
                          arguments={"x-max-length": 10, "x-message-ttl": 60000, "x-queue-mode": "lazy"})
    assert ok.method.queue == name

    # rabbitmqadmin's own default is durable=true (the string "true" in the body);
    # queue_type=T is sent as the argument x-queue-type
    durable = f"{uid}.durable"
    admin.run("declare", "queue", f"name={durable}", "auto_delete=false", "queue_type=classic")
    got = mgmt.get(f"/api/queues/{q(vhost)}/{q(durable)}").body
    assert (got["durable"], got["arguments"], got["type"]) == (True, {"x-queue-type": "classic"}, "classic")

    rows = admin.table("list", "queues")
    assert set(rows_by(rows)) == {name, durable} and set(rows[0]) == {"name", "messages"}
    tsv = admin.tsv("list", "queues", "name", "durable", "auto_delete", "arguments.x-max-length",
                    "arguments.x-queue-mode")
    assert rows_by(tsv)[name] == {"name": name, "durable": "False", "auto_delete": "False",
                                  "arguments.x-max-length": "10", "arguments.x-queue-mode": "lazy"}
    assert rows_by(tsv)[durable]["durable"] == "True"
    raw = rows_by(admin.json("list", "queues"))
    assert raw[name]["arguments"] == {"x-max-length": 10, "x-message-ttl": 60000, "x-queue-mode": "lazy"}
    assert (raw[name]["vhost"], raw[name]["durable"]) == (vhost, False)

    out = admin.run("delete", "queue", f"name={name}")
    assert out.stdout == "queue deleted\n"
    assert mgmt.get(f"/api/queues/{q(vhost)}/{q(name)}").status == 404
    assert not queue_exists(vconnect, name)
    assert [r["name"] for r in admin.tsv("list", "queues")] == [durable]


def test_list_queue_message_counts(admin, vhost, uid, vch):
    name = f"{uid}.q"
    admin.run("declare", "queue", f"name={name}", "durable=false")
    for i in range(3):
        vch.basic_publish("", name, f"m{i}".encode())
    # "messages" comes from the broker's statistics (every 5 s on RabbitMQ)
    rows = poll(lambda: admin.table("list", "queues"), lambda rs: rows_by(rs)[name]["messages"] == "3",
                what=f"list queues to show 3 messages on {name}")
    assert rows_by(rows)[name] == {"name": name, "messages": "3"}
    raw = poll(lambda: admin.json("list", "queues", "name", "messages", "messages_ready",
                                  "messages_unacknowledged"),
               lambda rs: rows_by(rs)[name]["messages_ready"] == 3, what="messages_ready")
    assert rows_by(raw)[name] == {"name": name, "messages": 3, "messages_ready": 3,
                                  "messages_unacknowledged": 0}
    vhosts = poll(lambda: admin.tsv("list", "vhosts", vhost=None), lambda rs: rows_by(rs)[vhost]["messages"] == "3",
                  what="list vhosts to show 3 messages")
    assert set(vhosts[0]) == {"name", "messages"}


def test_list_sorting(admin, uid):
    names = [f"{uid}.c", f"{uid}.a", f"{uid}.b"]
    for name in names:
        admin.run("declare", "queue", f"name={name}", "durable=false")
    assert [r["name"] for r in admin.tsv("list", "queues", "name", "-S", "name")] == sorted(names)
    assert [r["name"] for r in admin.tsv("list", "queues", "name", "-S", "name", "-R")] == \
        sorted(names, reverse=True)


def test_purge_queue(admin, uid, vch):
    name = f"{uid}.q"
    admin.run("declare", "queue", f"name={name}", "durable=false")
    for i in range(5):
        vch.basic_publish("", name, f"m{i}".encode())
    assert passive_count(vch, name) == 5
    out = admin.run("purge", "queue", f"name={name}")
    assert out.stdout == "queue purged\n"
    assert passive_count(vch, name) == 0
    # the queue itself stays
    vch.basic_publish("", name, b"after")
    assert passive_count(vch, name) == 1
    missing = admin.fails("purge", "queue", f"name={name}.missing")
    assert "Not found" in missing.stderr


# --- exchanges and bindings ------------------------------------------------------------------

def test_declare_exchange_and_bindings(admin, mgmt, vhost, uid, vch):
    x, x2, queue = f"{uid}.x", f"{uid}.x2", f"{uid}.q"
    assert admin.run("declare", "exchange", f"name={x}", "type=topic").stdout == "exchange declared\n"
    admin.run("declare", "exchange", f"name={x2}", "type=fanout", "durable=false", "auto_delete=false",
              "internal=false", 'arguments={"alternate-exchange": "amq.fanout"}')
    admin.run("declare", "queue", f"name={queue}", "durable=false")
    got = mgmt.get(f"/api/exchanges/{q(vhost)}/{q(x)}").body
    assert (got["type"], got["durable"], got["auto_delete"], got["internal"]) == ("topic", True, False, False)
    got2 = mgmt.get(f"/api/exchanges/{q(vhost)}/{q(x2)}").body
    assert (got2["type"], got2["durable"], got2["arguments"]) == ("fanout", False, {"alternate-exchange": "amq.fanout"})

    exchanges = rows_by(admin.table("list", "exchanges"))
    assert {k: v["type"] for k, v in exchanges.items()} == {
        "": "direct", "amq.direct": "direct", "amq.fanout": "fanout", "amq.headers": "headers",
        "amq.match": "headers", "amq.rabbitmq.trace": "topic", "amq.topic": "topic", x: "topic", x2: "fanout"}
    assert set(rows_by(admin.tsv("list", "exchanges"))) == set(exchanges)
    raw = rows_by(admin.json("list", "exchanges"))
    assert (raw[x]["type"], raw[x]["vhost"], raw[x2]["arguments"]) == ("topic", vhost, {"alternate-exchange": "amq.fanout"})

    # queue binding with a topic pattern, and exchange-to-exchange with arguments
    assert admin.run("declare", "binding", f"source={x}", f"destination={queue}",
                     "routing_key=a.#").stdout == "binding declared\n"
    admin.run("declare", "binding", f"source={x}", "destination_type=exchange", f"destination={x2}",
              "routing_key=b.*", 'arguments={"x-match": "any"}')
    admin.run("declare", "binding", f"source={x2}", f"destination={queue}")
    assert [b["routing_key"] for b in mgmt.get(f"/api/bindings/{q(vhost)}/e/{q(x)}/q/{q(queue)}").body] == ["a.#"]
    e2e = mgmt.get(f"/api/bindings/{q(vhost)}/e/{q(x)}/e/{q(x2)}").body
    assert [(b["routing_key"], b["arguments"]) for b in e2e] == [("b.*", {"x-match": "any"})]

    table = admin.table("list", "bindings")
    assert sorted((r["source"], r["destination"], r["routing_key"]) for r in table) == sorted([
        ("", queue, queue), (x, queue, "a.#"), (x, x2, "b.*"), (x2, queue, "")])
    tsv = admin.tsv("list", "bindings", "source", "destination", "destination_type", "routing_key",
                    "properties_key")
    mine = {(r["source"], r["destination"]): r for r in tsv}
    assert mine[(x, queue)]["properties_key"] == "a.%23"
    assert mine[(x, queue)]["destination_type"] == "queue"
    assert mine[(x, x2)]["destination_type"] == "exchange"
    assert mine[(x, x2)]["properties_key"].startswith("b.%2A~")
    assert mine[(x2, queue)]["properties_key"] == "~"
    raw = admin.json("list", "bindings")
    assert {"source": x, "vhost": vhost, "destination": x2, "destination_type": "exchange",
            "routing_key": "b.*", "arguments": {"x-match": "any"},
            "properties_key": mine[(x, x2)]["properties_key"]} in raw

    # the bindings route: directly, and through x2
    vch.basic_publish(x, "a.z", b"direct", mandatory=True)
    vch.basic_publish(x, "b.z", b"via-x2", mandatory=True)
    assert passive_count(vch, queue) == 2

    # delete with the properties_key as listed (rabbitmqadmin percent-encodes it once more)
    assert admin.run("delete", "binding", f"source={x}", "destination_type=queue", f"destination={queue}",
                     "properties_key=a.%23").stdout == "binding deleted\n"
    admin.run("delete", "binding", f"source={x}", "destination_type=exchange", f"destination={x2}",
              f"properties_key={mine[(x, x2)]['properties_key']}")
    # the default properties_key is "~" (empty routing key, no arguments)
    admin.run("delete", "binding", f"source={x2}", "destination_type=queue", f"destination={queue}")
    assert [(r["source"], r["destination"]) for r in admin.tsv("list", "bindings")] == [("", queue)]
    missing = admin.fails("delete", "binding", f"source={x}", "destination_type=queue", f"destination={queue}",
                          "properties_key=a.%23")
    assert "Not found" in missing.stderr

    assert admin.run("delete", "exchange", f"name={x}").stdout == "exchange deleted\n"
    admin.run("delete", "exchange", f"name={x2}")
    assert mgmt.get(f"/api/exchanges/{q(vhost)}/{q(x)}").status == 404
    assert set(rows_by(admin.tsv("list", "exchanges"))) == set(exchanges) - {x, x2}


# --- publish and get ---------------------------------------------------------------------

def get_rows(admin, queue, ackmode, count=None, **kw) -> list[dict]:
    args = ["get", f"queue={queue}", f"ackmode={ackmode}"]
    if count is not None:
        args.append(f"count={count}")
    return admin.json(*args, **kw)


def test_publish_then_get(admin, vhost, uid, vch):
    name = f"{uid}.q"
    admin.run("declare", "queue", f"name={name}", "durable=false")
    for body in ("one", "two", "three"):
        out = admin.run("publish", f"routing_key={name}", f"payload={body}")
        assert out.stdout == "Message published\n"
    out = admin.run("publish", f"routing_key={name}.nowhere", "payload=lost")
    assert out.stdout == "Message published but NOT routed\n"
    assert passive_count(vch, name) == 3

    # the default: one message, ack_requeue_true (it stays, now redelivered)
    table = admin.table("get", f"queue={name}")
    assert table == [{"routing_key": name, "exchange": "", "message_count": "2", "payload": "one",
                      "payload_bytes": "3", "payload_encoding": "string", "properties": "",
                      "redelivered": "False"}]
    assert passive_count(vch, name) == 3
    got = get_rows(admin, name, "ack_requeue_true", count=2)
    assert [(m["payload"], m["redelivered"], m["message_count"]) for m in got] == \
        [("one", True, 2), ("two", False, 1)]
    assert all(m["exchange"] == "" and m["routing_key"] == name and m["payload_encoding"] == "string"
               for m in got)
    assert passive_count(vch, name) == 3

    # reject_requeue_true keeps it too
    got = get_rows(admin, name, "reject_requeue_true")
    assert [(m["payload"], m["redelivered"]) for m in got] == [("one", True)]
    assert passive_count(vch, name) == 3

    # ack_requeue_false removes them
    got = get_rows(admin, name, "ack_requeue_false", count=2)
    assert [(m["payload"], m["message_count"]) for m in got] == [("one", 2), ("two", 1)]
    assert passive_count(vch, name) == 1
    got = get_rows(admin, name, "ack_requeue_false", count=5)
    assert [(m["payload"], m["redelivered"], m["message_count"]) for m in got] == [("three", False, 0)]
    assert passive_count(vch, name) == 0
    assert admin.run("get", f"queue={name}").stdout == "No items\n"
    assert get_rows(admin, name, "ack_requeue_false") == []

    # and through a named exchange with a routing key
    x = f"{uid}.x"
    admin.run("declare", "exchange", f"name={x}", "type=direct", "durable=false")
    admin.run("declare", "binding", f"source={x}", f"destination={name}", "routing_key=rk")
    assert admin.run("publish", f"exchange={x}", "routing_key=rk", "payload=routed").stdout == "Message published\n"
    assert admin.run("publish", f"exchange={x}", "routing_key=other", "payload=x").stdout == \
        "Message published but NOT routed\n"
    got = get_rows(admin, name, "ack_requeue_false")
    assert [(m["payload"], m["exchange"], m["routing_key"], m["message_count"]) for m in got] == \
        [("routed", x, "rk", 0)]


def test_publish_properties_and_stdin(admin, vhost, uid, vch):
    import pika

    name = f"{uid}.q"
    admin.run("declare", "queue", f"name={name}", "durable=false")
    admin.run("publish", f"routing_key={name}", "payload=hello",
              'properties={"content_type": "text/plain", "delivery_mode": 2, "priority": 3, '
              '"correlation_id": "c-1", "headers": {"h1": "v1", "n": 7}}')
    # without payload= the message is read from stdin (sent base64-encoded)
    text = "h\u00e9llo \u2713 from stdin\n"
    assert admin.run("publish", f"routing_key={name}", stdin=text).stdout == "Message published\n"

    method, props, body = vch.basic_get(name, auto_ack=True)
    assert body == b"hello"
    assert (props.content_type, props.delivery_mode, props.priority, props.correlation_id) == \
        ("text/plain", 2, 3, "c-1")
    assert props.headers == {"h1": "v1", "n": 7}
    method, props, body = vch.basic_get(name, auto_ack=True)
    assert body == text.encode("utf-8")

    # get shows the properties (raw_json) and can force base64
    vch.basic_publish("", name, b"\x00\x01binary\xff", properties=pika.BasicProperties(
        content_type="application/octet-stream", headers={"k": "v"}))
    got = get_rows(admin, name, "ack_requeue_true")
    assert got[0]["payload_encoding"] == "base64"
    assert base64.b64decode(got[0]["payload"]) == b"\x00\x01binary\xff"
    assert got[0]["payload_bytes"] == 9
    assert got[0]["properties"]["content_type"] == "application/octet-stream"
    assert got[0]["properties"]["headers"] == {"k": "v"}
    vch.basic_get(name, auto_ack=True)
    vch.basic_publish("", name, b"plain text")
    got = admin.json("get", f"queue={name}", "encoding=base64")
    assert (got[0]["payload_encoding"], base64.b64decode(got[0]["payload"])) == ("base64", b"plain text")


def test_get_to_payload_file(admin, uid, vch, tmp_path):
    name = f"{uid}.q"
    admin.run("declare", "queue", f"name={name}", "durable=false")
    vch.basic_publish("", name, "caf\u00e9 au lait".encode())
    path = tmp_path / "payload.txt"
    rows = admin.table("get", f"queue={name}", f"payload_file={path}")
    assert rows == [{"routing_key": name, "exchange": "", "message_count": "0", "payload_bytes": "13",
                     "redelivered": "False"}]
    assert path.read_bytes() == "caf\u00e9 au lait".encode()


# --- vhosts, users, permissions ----------------------------------------------------------

def test_declare_and_delete_vhost(admin, mgmt, uid, pika_connect, doomed):
    name = doomed.vhost(f"{uid}.new")
    assert admin.run("declare", "vhost", f"name={name}", vhost=None).stdout == "vhost declared\n"
    got = mgmt.get(f"/api/vhosts/{q(name)}")
    assert got.status == 200 and got.body["name"] == name
    # the declaring administrator gets full permissions, as with PUT /api/vhosts
    perms = mgmt.get(f"/api/permissions/{q(name)}/{q(mgmt.user)}")
    assert perms.status == 200 and (perms.body["configure"], perms.body["write"], perms.body["read"]) == \
        (".*", ".*", ".*")
    conn = pika_connect(virtual_host=name)
    conn.channel().queue_declare(f"{uid}.q")
    conn.close()
    assert name in [r["name"] for r in admin.table("list", "vhosts", vhost=None)]
    assert name in [r["name"] for r in admin.tsv("list", "vhosts", vhost=None)]
    raw = rows_by(admin.json("list", "vhosts", vhost=None))
    assert name in raw and "/" in raw
    assert name in admin.run("list", "vhosts", fmt="bash", vhost=None).stdout.split()

    assert admin.run("delete", "vhost", f"name={name}", vhost=None).stdout == "vhost deleted\n"
    assert mgmt.get(f"/api/vhosts/{q(name)}").status == 404
    assert name not in [r["name"] for r in admin.tsv("list", "vhosts", vhost=None)]
    assert "Not found" in admin.fails("delete", "vhost", f"name={name}", vhost=None).stderr


def test_declare_user_with_tags_and_permission(admin, mgmt, vhost, uid, connect_as, doomed):
    import pika.exceptions

    name, password = doomed.user(f"{uid}.user"), f"pw-{uuid.uuid4().hex[:10]}"
    out = admin.run("declare", "user", f"name={name}", f"password={password}", "tags=management,policymaker",
                    vhost=None)
    assert out.stdout == "user declared\n"
    got = mgmt.get(f"/api/users/{q(name)}")
    assert got.status == 200, got.body
    assert sorted(got.body["tags"]) == ["management", "policymaker"]
    assert mgmt.as_user(name, password).get("/api/whoami").body["name"] == name

    users = rows_by(admin.table("list", "users", vhost=None))
    assert sorted(users[name]["tags"].split()) == ["management", "policymaker"]
    assert users[name]["hashing_algorithm"] == got.body["hashing_algorithm"]
    assert users[name]["password_hash"] == got.body["password_hash"]
    assert sorted(rows_by(admin.tsv("list", "users", "name", "tags", vhost=None))[name]["tags"].split()) == \
        ["management", "policymaker"]
    raw = rows_by(admin.json("list", "users", vhost=None))
    assert sorted(raw[name]["tags"]) == ["management", "policymaker"]

    # no permissions yet: AMQP access to the vhost is refused
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect_as(name, vhost, password)
    out = admin.run("declare", "permission", f"vhost={vhost}", f"user={name}", f"configure=^{uid}\\.",
                    "write=.*", "read=.*")
    assert out.stdout == "permission declared\n"
    assert mgmt.get(f"/api/permissions/{q(vhost)}/{q(name)}").body == \
        {"user": name, "vhost": vhost, "configure": f"^{uid}\\.", "write": ".*", "read": ".*"}
    conn = connect_as(name, vhost, password)
    ch = conn.channel()
    ch.queue_declare(f"{uid}.allowed")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        ch.queue_declare("not-allowed")
    assert refused.value.reply_code == 403
    conn.close()

    perms = [r for r in admin.table("list", "permissions", vhost=None) if r["user"] == name]
    assert perms == [{"vhost": vhost, "user": name, "configure": f"^{uid}\\.", "write": ".*", "read": ".*"}]
    perms = [r for r in admin.json("list", "permissions", vhost=None) if r["user"] == name]
    assert perms == [{"vhost": vhost, "user": name, "configure": f"^{uid}\\.", "write": ".*", "read": ".*"}]
    assert [r["vhost"] for r in admin.tsv("list", "permissions", vhost=None) if r["user"] == name] == [vhost]

    assert admin.run("delete", "permission", f"vhost={vhost}", f"user={name}").stdout == "permission deleted\n"
    assert mgmt.get(f"/api/permissions/{q(vhost)}/{q(name)}").status == 404
    with pytest.raises(pika.exceptions.ProbableAccessDeniedError):
        connect_as(name, vhost, password)

    # tags replaced by a second declare (the password too)
    password2 = password + "-2"
    admin.run("declare", "user", f"name={name}", f"password={password2}", "tags=monitoring", vhost=None)
    assert mgmt.get(f"/api/users/{q(name)}").body["tags"] == ["monitoring"]
    assert mgmt.as_user(name, password2).get("/api/whoami").status == 200
    assert mgmt.as_user(name, password).get("/api/whoami").status == 401

    assert admin.run("delete", "user", f"name={name}", vhost=None).stdout == "user deleted\n"
    assert mgmt.get(f"/api/users/{q(name)}").status == 404
    assert name not in rows_by(admin.tsv("list", "users", vhost=None))
    assert "Not found" in admin.fails("delete", "user", f"name={name}", vhost=None).stderr


def test_declare_user_with_password_hash(admin, mgmt, vhost, uid, connect_as, doomed):
    from mgmt import SHA256, password_hash

    name, password = doomed.user(f"{uid}.user"), f"pw-{uuid.uuid4().hex[:10]}"
    hashed = password_hash(password)
    admin.run("declare", "user", f"name={name}", f"password_hash={hashed}",
              f"hashing_algorithm={SHA256}", "tags=", vhost=None)
    got = mgmt.get(f"/api/users/{q(name)}").body
    assert (got["password_hash"], got["hashing_algorithm"], got["tags"]) == (hashed, SHA256, [])
    admin.run("declare", "permission", f"vhost={vhost}", f"user={name}", "configure=.*", "write=.*", "read=.*")
    conn = connect_as(name, vhost, password)
    assert conn.is_open
    assert rows_by(admin.json("list", "users", vhost=None))[name]["tags"] == []
    assert rows_by(admin.tsv("list", "users", "name", "tags", vhost=None))[name]["tags"] == ""


# --- connections, channels, consumers, nodes, overview ------------------------------------

def test_list_connections_channels_consumers(admin, mgmt, vhost, uid, vconnect, broker):
    conn = vconnect(client_properties={"connection_name": uid})
    ch = conn.channel()
    queue = ch.queue_declare(f"{uid}.q").method.queue
    ch.basic_qos(prefetch_count=4)
    ch.basic_consume(queue, lambda *a: None, consumer_tag=f"{uid}.ctag")
    conn.process_data_events(0.1)

    def mine(items):
        return [c for c in items if c.get("vhost") == vhost]

    conns = poll(lambda: mine(admin.json("list", "connections", vhost=None)), lambda cs: len(cs) == 1,
                 what="our connection in list connections")
    name = conns[0]["name"]
    assert conns[0]["user"] == broker.user
    assert conns[0]["client_properties"]["connection_name"] == uid
    table = poll(lambda: rows_by(admin.table("list", "connections", vhost=None)),
                 lambda rows: rows[name]["channels"] == "1", what="list connections to count 1 channel")
    assert table[name] == {"name": name, "user": broker.user, "channels": "1"}
    assert rows_by(admin.tsv("list", "connections", vhost=None))[name]["user"] == broker.user

    chan = f"{name} (1)"
    channels = poll(lambda: rows_by(admin.table("list", "channels", vhost=None)), lambda rows: chan in rows,
                    what="our channel in list channels")
    assert channels[chan] == {"name": chan, "user": broker.user}
    raw = [c for c in admin.json("list", "channels", vhost=None) if c["name"] == chan]
    assert len(raw) == 1 and (raw[0]["vhost"], raw[0]["number"], raw[0]["prefetch_count"]) == (vhost, 1, 4)
    assert chan in rows_by(admin.tsv("list", "channels", vhost=None))

    consumers = poll(lambda: admin.table("list", "consumers"), lambda rows: len(rows) == 1,
                     what="our consumer in list consumers")
    row = consumers[0]
    assert (row["consumer_tag"], row["ack_required"], row["exclusive"], row["prefetch_count"]) == \
        (f"{uid}.ctag", "True", "False", "4")
    assert admin.tsv("list", "consumers", "consumer_tag", "queue.name", "channel_details.name") == \
        [{"consumer_tag": f"{uid}.ctag", "queue.name": queue, "channel_details.name": chan}]
    raw = admin.json("list", "consumers")
    assert len(raw) == 1 and raw[0]["queue"] == {"name": queue, "vhost": vhost}
    assert raw[0]["channel_details"]["connection_name"] == name


@pytest.mark.parametrize("listing, columns, expected", [
    ("queues", "name,durable", {"name", "durable"}),
    ("exchanges", "name,type", {"name", "type"}),
    ("bindings", "source,destination", {"source", "destination"}),
    ("users", "name,tags", {"name", "tags"}),
    ("vhosts", "name,tracing", {"name", "tracing"}),
    ("permissions", "user,vhost", {"user", "vhost"}),
    ("connections", "name,user", {"name", "user"}),
    ("channels", "name,user", {"name", "user"}),
    ("consumers", "consumer_tag,queue.name", {"consumer_tag": None, "queue": {"name"}}),
    ("nodes", "name,type", {"name", "type"}),
    ("overview", "node,object_totals.queues", {"node", "object_totals"}),
])
def test_raw_json_keeps_only_the_columns(admin, vhost, uid, vconnect, listing, columns, expected):
    """``-f raw_json list X a b`` prints the API's answer to ``?columns=a,b``:
    only those keys (dotted ones nest: ``queue.name`` -> ``{"queue": {"name": ...}}``;
    the overview filters only its top-level keys)."""
    conn = vconnect()
    ch = conn.channel()
    queue = ch.queue_declare(f"{uid}.q").method.queue
    ch.basic_consume(queue, lambda *a: None, consumer_tag=f"{uid}.ctag")
    conn.process_data_events(0.1)
    verb = "show" if listing == "overview" else "list"
    scoped = listing in ("queues", "exchanges", "bindings", "consumers")

    def fetch():
        items = admin.json(verb, listing, *columns.split(","), vhost=vhost if scoped else None)
        return items if isinstance(items, list) else [items]

    items = poll(fetch, lambda items: len(items) > 0, what=f"a non-empty {listing} listing")
    for item in items:
        if isinstance(expected, dict):
            assert set(item) == set(expected), item
            for key, sub in expected.items():
                if sub is not None:
                    assert set(item[key]) == sub, item
        else:
            assert set(item) == expected, item


def test_close_connection(admin, vhost, uid, vconnect):
    import pika.exceptions

    conn = vconnect()
    conn.channel()

    def mine():
        return [c["name"] for c in admin.json("list", "connections", "name", "vhost", vhost=None)
                if c.get("vhost") == vhost]

    name = poll(mine, lambda names: len(names) == 1, what="our connection")[0]
    out = admin.run("close", "connection", f"name={name}", vhost=None)
    assert out.stdout == "connection closed\n"
    with pytest.raises(pika.exceptions.ConnectionClosedByBroker) as closed:
        for _ in range(50):
            conn.process_data_events(0.1)
    assert closed.value.reply_code == 320
    assert closed.value.reply_text == "CONNECTION_FORCED - Closed via management plugin"
    poll(mine, lambda names: names == [], what="the connection to disappear")
    assert "Not found" in admin.fails("close", "connection", f"name={name}", vhost=None).stderr


def test_list_nodes_and_show_overview(admin, mgmt, uid):
    admin.run("declare", "queue", f"name={uid}.q", "durable=false")
    nodes = mgmt.get("/api/nodes").body
    names = sorted(n["name"] for n in nodes)
    table = admin.table("list", "nodes", vhost=None)
    assert sorted(r["name"] for r in table) == names
    assert set(table[0]) == {"name", "type", "mem_used"}
    assert all(r["type"] == "disc" and int(r["mem_used"]) > 0 for r in table)
    assert sorted(r["name"] for r in admin.tsv("list", "nodes", vhost=None)) == names
    raw = admin.json("list", "nodes", vhost=None)
    assert sorted(n["name"] for n in raw) == names
    assert all(n["running"] is True for n in raw)

    overview = mgmt.get("/api/overview").body
    table = admin.table("show", "overview", vhost=None)
    assert len(table) == 1
    row = table[0]
    assert list(row) == ["rabbitmq_version", "cluster_name", "queue_totals.messages", "object_totals.queues"]
    assert row["rabbitmq_version"] == overview["rabbitmq_version"]
    assert row["cluster_name"] == overview["cluster_name"]
    assert int(row["object_totals.queues"]) >= 1
    tsv = admin.tsv("show", "overview", "node", "object_totals.exchanges", "object_totals.queues", vhost=None)
    assert tsv[0]["node"] == overview["node"] and tsv[0]["node"] in names
    assert int(tsv[0]["object_totals.exchanges"]) >= 14  # the predeclared ones of two vhosts
    raw = admin.json("show", "overview", vhost=None)
    assert isinstance(raw, list) and len(raw) == 1
    assert raw[0]["rabbitmq_version"] == overview["rabbitmq_version"]
    assert set(raw[0]["object_totals"]) >= {"connections", "channels", "exchanges", "queues", "consumers"}


# --- definitions ------------------------------------------------------------------------------

def make_topology(admin, uid) -> tuple[str, str]:
    x, queue = f"{uid}.x", f"{uid}.q"
    admin.run("declare", "exchange", f"name={x}", "type=topic", 'arguments={"alternate-exchange": "amq.fanout"}')
    admin.run("declare", "queue", f"name={queue}", 'arguments={"x-max-length": 7, "x-message-ttl": 60000}')
    admin.run("declare", "binding", f"source={x}", f"destination={queue}", "routing_key=a.#",
              'arguments={"x-b": 1}')
    return x, queue


def check_topology(mgmt, vhost, x, queue, ch):
    got = mgmt.get(f"/api/exchanges/{q(vhost)}/{q(x)}")
    assert got.status == 200, got.body
    assert (got.body["type"], got.body["durable"], got.body["arguments"]) == \
        ("topic", True, {"alternate-exchange": "amq.fanout"})
    got = mgmt.get(f"/api/queues/{q(vhost)}/{q(queue)}")
    assert got.status == 200, got.body
    assert (got.body["durable"], got.body["arguments"]) == (True, {"x-max-length": 7, "x-message-ttl": 60000})
    got = mgmt.get(f"/api/bindings/{q(vhost)}/e/{q(x)}/q/{q(queue)}").body
    assert [(b["routing_key"], b["arguments"]) for b in got] == [("a.#", {"x-b": 1})]
    ch.basic_publish(x, "a.b.c", b"through the imported binding", mandatory=True)
    assert ch.basic_get(queue, auto_ack=True)[2] == b"through the imported binding"


def test_export_import_vhost_round_trip(admin, mgmt, vhost, uid, vhost_factory, pika_connect, tmp_path):
    x, queue = make_topology(admin, uid)
    path = tmp_path / "defs.json"
    out = admin.run("export", str(path))
    assert out.stdout == f"Exported definitions for {admin.host} to \"{path}\"\n"
    doc = json.loads(path.read_text())
    assert set(doc) >= {"rabbit_version", "parameters", "policies", "queues", "exchanges", "bindings"}
    assert doc["queues"] == [{"name": queue, "durable": True, "auto_delete": False,
                              "arguments": {"x-max-length": 7, "x-message-ttl": 60000}}]
    assert doc["exchanges"] == [{"name": x, "type": "topic", "durable": True, "auto_delete": False,
                                 "internal": False, "arguments": {"alternate-exchange": "amq.fanout"}}]
    assert doc["bindings"] == [{"source": x, "destination": queue, "destination_type": "queue",
                                "routing_key": "a.#", "arguments": {"x-b": 1}}]

    fresh = vhost_factory(".copy")
    out = admin.run("import", str(path), vhost=fresh)
    assert out.stdout.startswith("Uploaded definitions from")
    ch = pika_connect(virtual_host=fresh).channel()
    ch.confirm_delivery()
    check_topology(mgmt, fresh, x, queue, ch)
    assert set(rows_by(admin.tsv("list", "queues", vhost=fresh))) == {queue}
    # importing again changes nothing
    admin.run("import", str(path), vhost=fresh)
    assert len(mgmt.get(f"/api/bindings/{q(fresh)}/e/{q(x)}/q/{q(queue)}").body) == 1
    again = tmp_path / "again.json"
    admin.run("export", str(again), vhost=fresh)
    copy = json.loads(again.read_text())
    for key in ("queues", "exchanges", "bindings"):
        assert copy[key] == doc[key], key


def test_export_import_full_into_fresh_broker(rabbitmqadmin_script, admin, mgmt, vhost, uid, broker_factory,
                                              tmp_path, doomed):
    import pika

    from mgmt import Mgmt

    x, queue = make_topology(admin, uid)
    name, password = doomed.user(f"{uid}.user"), f"pw-{uuid.uuid4().hex[:10]}"
    admin.run("declare", "user", f"name={name}", f"password={password}", "tags=management", vhost=None)
    admin.run("declare", "permission", f"vhost={vhost}", f"user={name}", "configure=.*", "write=.*", "read=^r")

    path = tmp_path / "all.json"
    admin.run("export", str(path), vhost=None)
    doc = json.loads(path.read_text())
    assert set(doc) >= {"rabbit_version", "users", "vhosts", "permissions", "topic_permissions", "parameters",
                        "global_parameters", "policies", "queues", "exchanges", "bindings"}
    assert {"name": queue, "vhost": vhost, "durable": True, "auto_delete": False,
            "arguments": {"x-max-length": 7, "x-message-ttl": 60000}} in doc["queues"]
    assert {"user": name, "vhost": vhost, "configure": ".*", "write": ".*", "read": "^r"} in doc["permissions"]
    me = next(u for u in doc["users"] if u["name"] == name)
    assert me["tags"] in (["management"], "management")

    other = broker_factory.start()
    other_mgmt = Mgmt(other.mgmt_url, "guest", "guest")
    poll(lambda: _status(other_mgmt, "/api/whoami"), lambda s: s == 200, timeout=60,
         what="the fresh broker's management API")
    other_admin = admin_for(rabbitmqadmin_script, other.mgmt_url, "guest", "guest")
    assert vhost not in [r["name"] for r in other_admin.tsv("list", "vhosts")]
    out = other_admin.run("import", str(path))
    assert out.stdout.startswith("Uploaded definitions from")

    assert vhost in [r["name"] for r in other_admin.tsv("list", "vhosts")]
    u = other_mgmt.get(f"/api/users/{q(name)}").body
    assert (u["tags"], u["password_hash"]) == (["management"], me["password_hash"])
    assert other_mgmt.get(f"/api/permissions/{q(vhost)}/{q(name)}").body == \
        {"user": name, "vhost": vhost, "configure": ".*", "write": ".*", "read": "^r"}
    # the imported user logs in with its password (over HTTP and AMQP)
    assert other_mgmt.as_user(name, password).get("/api/whoami").body["name"] == name
    params = pika.ConnectionParameters(other.host, other.port, vhost, pika.PlainCredentials("guest", "guest"),
                                       connection_attempts=1, socket_timeout=10)
    conn = pika.BlockingConnection(params)
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        check_topology(other_mgmt, vhost, x, queue, ch)
    finally:
        conn.close()
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        other.host, other.port, vhost, pika.PlainCredentials(name, password), connection_attempts=1))
    conn.close()


def _status(api, path) -> Optional[int]:
    try:
        return api.get(path).status
    except OSError:
        return None


# --- policies and limits ------------------------------------------------------------------

def test_policies(admin, mgmt, vhost, uid, vch, vhost_factory, tmp_path):
    policy, queue = f"{uid}.p", f"{uid}.q"
    out = admin.run("declare", "policy", f"name={policy}", f"pattern=^{uid}\\.q$",
                    'definition={"max-length": 2}', "apply-to=queues", "priority=3")
    assert out.stdout == "policy declared\n"
    got = mgmt.get(f"/api/policies/{q(vhost)}/{q(policy)}")
    assert got.status == 200, got.body
    assert got.body == {"vhost": vhost, "name": policy, "pattern": f"^{uid}\\.q$", "apply-to": "queues",
                        "definition": {"max-length": 2}, "priority": 3}

    # list policies is not vhost-scoped in rabbitmqadmin: GET /api/policies
    table = [r for r in admin.table("list", "policies") if r["vhost"] == vhost]
    assert table == [{"vhost": vhost, "name": policy, "apply-to": "queues", "definition": '{"max-length": 2}',
                      "pattern": f"^{uid}\\.q$", "priority": "3"}]
    raw = [p for p in admin.json("list", "policies") if p["vhost"] == vhost]
    assert raw == [got.body]
    tsv = [r for r in admin.tsv("list", "policies", "vhost", "name", "definition") if r["vhost"] == vhost]
    assert tsv == [{"vhost": vhost, "name": policy, "definition": '{"max-length": 2}'}]
    raw = [p for p in admin.json("list", "policies", "vhost", "name") if p["vhost"] == vhost]
    assert raw == [{"vhost": vhost, "name": policy}]

    # the policy applies: max-length 2 drops from the head
    admin.run("declare", "queue", f"name={queue}", "durable=false")
    for i in range(5):
        vch.basic_publish("", queue, f"m{i}".encode())
    assert passive_count(vch, queue) == 2
    assert [m["payload"] for m in get_rows(admin, queue, "ack_requeue_true", count=5)] == ["m3", "m4"]
    shown = poll(lambda: mgmt.get(f"/api/queues/{q(vhost)}/{q(queue)}").body,
                 lambda b: b.get("policy") == policy, what="the queue's policy")
    assert shown["effective_policy_definition"] == {"max-length": 2}
    assert poll(lambda: rows_by(admin.tsv("list", "queues", "name", "policy")),
                lambda rows: rows[queue]["policy"] == policy, what="list queues name policy")

    # exported and imported with the vhost's definitions
    path = tmp_path / "defs.json"
    admin.run("export", str(path))
    assert [p["name"] for p in json.loads(path.read_text())["policies"]] == [policy]
    fresh = vhost_factory(".copy")
    admin.run("import", str(path), vhost=fresh)
    copied = mgmt.get(f"/api/policies/{q(fresh)}/{q(policy)}")
    assert copied.status == 200 and copied.body["definition"] == {"max-length": 2}

    assert admin.run("delete", "policy", f"name={policy}").stdout == "policy deleted\n"
    assert mgmt.get(f"/api/policies/{q(vhost)}/{q(policy)}").status == 404
    assert [r for r in admin.json("list", "policies") if r["vhost"] == vhost] == []
    for i in range(5, 8):
        vch.basic_publish("", queue, f"m{i}".encode())
    assert passive_count(vch, queue) == 5  # no limit any more
    assert "Not found" in admin.fails("delete", "policy", f"name={policy}").stderr


def test_vhost_limits(admin, mgmt, vhost, uid, vch):
    import pika.exceptions

    out = admin.run("declare", "vhost_limit", f"vhost={vhost}", "name=max-queues", "value=1")
    assert out.stdout == "vhost_limit declared\n"
    assert mgmt.get(f"/api/vhost-limits/{q(vhost)}").body == [{"vhost": vhost, "value": {"max-queues": 1}}]
    rows = [r for r in admin.table("list", "vhost_limits", vhost=None) if r["vhost"] == vhost]
    assert rows == [{"vhost": vhost, "value": '{"max-queues": 1}'}]
    vch.queue_declare(f"{uid}.one")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
        vch.queue_declare(f"{uid}.two")
    assert refused.value.reply_code == 406
    assert admin.run("delete", "vhost_limit", f"vhost={vhost}", "name=max-queues").stdout == \
        "vhost_limit deleted\n"
    # (RabbitMQ keeps an entry with an empty value array; Warren drops it)
    assert all(not r["value"] for r in admin.json("list", "vhost_limits", vhost=None) if r["vhost"] == vhost)
    admin.run("declare", "queue", f"name={uid}.two", "durable=false")


# --- the served script ------------------------------------------------------------------------

def test_the_broker_serves_its_script_without_login(mgmt):
    """GET /cli/rabbitmqadmin, no credentials (RabbitMQ serves its script the
    same way): the repository's file, byte for byte."""
    if _broker_is_rabbitmq_stand_in():
        pytest.skip("RabbitMQ serves its own script")
    with urllib.request.urlopen(mgmt.base_url.rstrip("/") + SERVED_PATH, timeout=30) as resp:
        assert resp.status == 200
        body = resp.read()
    assert body == WARREN_SCRIPT.read_bytes()


# --- errors -----------------------------------------------------------------------------------

def test_errors(admin, mgmt, vhost, uid):
    name = f"{uid}.q"
    admin.run("declare", "queue", f"name={name}", "durable=false")
    # 400: the JSON "reason" is printed
    r = admin.fails("declare", "queue", f"name={name}", "durable=true")
    assert r.stderr.strip() == (f"*** inequivalent arg 'durable' for queue '{name}' in vhost '{vhost}': "
                                "received 'true' but current is 'false'")
    r = admin.fails("declare", "exchange", f"name={uid}.x", "type=no-such-type")
    assert r.stderr.startswith("*** ") and "no-such-type" in r.stderr
    # 404
    r = admin.fails("list", "queues", vhost=f"{vhost}.missing")
    assert r.stderr.strip() == f"*** Not found: /api/queues/{urllib.parse.quote_plus(vhost + '.missing')}" \
                               "?columns=name,messages"
    assert admin.fails("delete", "queue", f"name={name}.missing").stderr.strip() == \
        f"*** Not found: /api/queues/{q(vhost)}/{q(name + '.missing')}"
    assert "Not found" in admin.fails("get", f"queue={name}.missing").stderr
    # 401: wrong password
    r = admin.with_(password="wrong").fails("list", "vhosts", vhost=None)
    assert r.stderr.strip() == "*** Access refused: /api/vhosts?columns=name,messages"


if __name__ == "__main__":
    if sys.argv[1:] == ["--fetch"]:
        try:
            steps: list[str] = []
            found = locate_rabbitmqadmin(steps)
            print("\n".join(steps), file=sys.stderr)
            print(found, script_version(found))
        except FetchError as exc:
            print(exc, file=sys.stderr)
            sys.exit(1)
    else:
        print(f"usage: {sys.argv[0]} --fetch   (run the tests with run.sh)", file=sys.stderr)
        sys.exit(2)
