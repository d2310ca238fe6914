"""The README runs as written: every ```bash block, in order, each command verbatim.

The commands run in a fresh temporary home (``HOME`` and ``MUSICREC_HOME`` there), from a working
folder that has ``../shared/data`` beside it, as the repository root has. What the README cannot
show verbatim is set up around the commands, never in them:

- ``~/Downloads/my_spotify_data`` (the walk-through's "your own export") is a copy of
  ``tests/fixtures/spotify``, and ``~/Downloads/my_spotify_data.zip`` that folder zipped as Spotify
  delivers it; ``~/Downloads/listenbrainz_alice.zip`` is ``tests/fixtures/listenbrainz`` zipped as a
  ListenBrainz export (``user.json`` + ``listens/``);
- ``musicrec serve ...`` runs until stopped, so it is started in the background; the test waits
  (bounded) until its ``/health`` answers on 127.0.0.1 and stops it at the end of its block. It
  must get the README's port (8000 unless ``--port`` says otherwise): a busy port fails the test;
- ``curl`` reads ``~/.curlrc``, which makes it fail on an HTTP error and print the status, so
  every call is checked for status 200 and a JSON body;
- torch and BLAS get one thread each (``OMP_NUM_THREADS=1``), so the run time holds on a shared
  2-core machine.

```python blocks run too (``python FILE`` in the same folder). ```console blocks are not run; the
README says why before each. The test prints what it ran, and fails if fewer blocks or commands
ran than the README has had since this test was written, so it cannot pass by running nothing.
Reads ``../shared/data``, hence ``integration``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")
SPOTIFY_FIXTURE = os.path.join(ROOT, "tests", "fixtures", "spotify")
LISTENBRAINZ_FIXTURE = os.path.join(ROOT, "tests", "fixtures", "listenbrainz")
RUN = ("bash", "python")                # fence languages this test runs
COMMAND_TIMEOUT_S = 300                 # any one command
SERVER_START_S = 120                    # a server's /health must answer within this
MIN_BASH_BLOCKS = 6                     # floors: the README had 6 bash blocks / 35 commands
MIN_COMMANDS = 33
CURLRC = """\
fail-with-body
silent
show-error
max-time = 60
write-out = "\\n%{http_code}"
"""

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)


def readme_blocks(text: str) -> list[tuple[str, int, str]]:
    """Every fenced block: (language, line of its opening fence, body)."""
    return [(m.group(1), text.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(text)]


def shell_commands(body: str) -> list[str]:
    """The commands of a bash block: backslash continuations joined; blank and comment lines dropped."""
    commands, current = [], ""
    for line in body.splitlines():
        current += line.lstrip() if current else line
        if current.endswith("\\"):
            current = current[:-1].rstrip() + " "
            continue
        if current.strip() and not current.lstrip().startswith("#"):
            commands.append(current.strip())
        current = ""
    if current.strip():
        commands.append(current.strip())
    return commands


def test_extracts_blocks_and_joins_continuations():
    text = "x\n```bash\n# c\nmusicrec a \\\n    --b 1   # d\n\ncurl \"u?a=1&b=2\"\n```\n```console\nno\n```\n"
    blocks = readme_blocks(text)
    assert [(lang, line) for lang, line, _ in blocks] == [("bash", 2), ("console", 9)]
    assert shell_commands(blocks[0][2]) == ["musicrec a --b 1   # d", 'curl "u?a=1&b=2"']


# ---------------------------------------------------------------- running them
class Runner:
    def __init__(self, home: str, cwd: str):
        self.cwd = cwd
        bin_dir = os.path.dirname(sys.executable)          # musicrec and python of this environment
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("MUSICREC_", "PYTEST_", "AWS_", "RAY_"))}
        self.env.update(HOME=home, MUSICREC_HOME=os.path.join(home, "musicrec-home"),
                        PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), COLUMNS="120",
                        # one torch/BLAS thread: on 2 cores shared with other jobs, two threads per
                        # process wait on each other (a one-epoch SASRec: 13 s on one thread, 67 s on two)
                        OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        self.servers: list[tuple[subprocess.Popen, int, str]] = []
        self.n_started = 0
        self.ran: list[tuple[int, str, float]] = []         # (README line, command, seconds)

    def run(self, command: str, line: int) -> None:
        start = time.monotonic()
        words = shlex.split(command, comments=True)
        if words[:2] == ["musicrec", "serve"]:
            self.start_server(command, words, line)
        elif words[:1] == ["curl"]:
            self.curl(command, line)
        else:
            proc = self.shell(command, line)
            assert proc.returncode == 0, self.failed(line, command, proc)
        self.ran.append((line, command, time.monotonic() - start))

    def shell(self, command: str, line: int) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(["bash", "-c", command], cwd=self.cwd, env=self.env, capture_output=True,
                                  text=True, timeout=COMMAND_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"README line {line}: `{command}` ran past {COMMAND_TIMEOUT_S} s")

    @staticmethod
    def failed(line: int, command: str, proc) -> str:
        return (f"README line {line}: `{command}` exited {proc.returncode}\n"
                f"--- stdout (end)\n{proc.stdout[-3000:]}\n--- stderr (end)\n{proc.stderr[-3000:]}")

    def curl(self, command: str, line: int) -> None:
        if shutil.which("curl", path=self.env["PATH"]) is None:
            pytest.fail(f"README line {line}: curl is not installed, and the README's HTTP examples use it")
        proc = self.shell(command, line)
        assert proc.returncode == 0, self.failed(line, command, proc)
        body, _, status = proc.stdout.rpartition("\n")
        assert status == "200", self.failed(line, command, proc)
        try:
            json.loads(body)
        except ValueError:
            pytest.fail(f"README line {line}: `{command}` answered something that is not JSON: {body[:500]!r}")

    def start_server(self, command: str, words: list[str], line: int) -> None:
        port = int(words[words.index("--port") + 1]) if "--port" in words else 8000
        host = words[words.index("--host") + 1] if "--host" in words else "127.0.0.1"
        assert host == "127.0.0.1", f"README line {line}: a server in a bash block must stay on loopback"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.fail(f"README line {line}: port {port} is already in use; the README's servers need it "
                            "(stop whatever listens there)")
        self.n_started += 1
        log = open(os.path.join(self.cwd, f"server-{self.n_started}.log"), "w+")
        proc = subprocess.Popen(["bash", "-c", "exec " + command], cwd=self.cwd, env=self.env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.servers.append((proc, port, log.name))
        deadline = time.monotonic() + SERVER_START_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"README line {line}: `{command}` exited {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        pytest.fail(f"README line {line}: `{command}` did not answer /health within {SERVER_START_S} s")

    def stop_servers(self) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL after 20 s; the port must be free again."""
        for proc, port, _ in self.servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)
        self.servers.clear()


def test_a_broken_example_fails(tmp_path):
    """A command that exits non-zero, or a curl that gets no 200 JSON answer, fails the run."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / ".curlrc").write_text(CURLRC)
    r = Runner(str(tmp_path / "home"), str(tmp_path))
    r.run("musicrec --help", 1)
    with pytest.raises(AssertionError, match="README line 2: `musicrec no-such-command` exited 2"):
        r.run("musicrec no-such-command", 2)
    with socket.socket() as s:                      # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(AssertionError, match="README line 3"):
        r.run(f'curl "http://localhost:{port}/health"', 3)
    assert [line for line, _, _ in r.ran] == [1]


@pytest.fixture
def runner(shared_data, tmp_path):
    home, cwd = tmp_path / "home", tmp_path / "work"
    cwd.mkdir()
    (tmp_path / "shared").mkdir()
    os.symlink(shared_data, tmp_path / "shared" / "data")       # so ../shared/data resolves from cwd
    shutil.copytree(SPOTIFY_FIXTURE, home / "Downloads" / "my_spotify_data")
    with zipfile.ZipFile(home / "Downloads" / "my_spotify_data.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(os.listdir(SPOTIFY_FIXTURE)):
            zf.write(os.path.join(SPOTIFY_FIXTURE, name), f"Spotify Extended Streaming History/{name}")
    with zipfile.ZipFile(home / "Downloads" / "listenbrainz_alice.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("user.json", json.dumps({"user_id": 1, "username": "alice"}))
        zf.write(os.path.join(LISTENBRAINZ_FIXTURE, "alice.jsonl"), "listens/2023/11.jsonl")
    (home / ".curlrc").write_text(CURLRC)
    r = Runner(str(home), str(cwd))
    yield r
    r.stop_servers()


def test_readme_examples_run_as_written(runner, capsys):
    with open(README, encoding="utf-8") as f:
        blocks = readme_blocks(f.read())
    start = time.monotonic()
    ran_blocks = {lang: 0 for lang in RUN}
    for lang, line, body in blocks:
        if lang == "bash":
            for command in shell_commands(body):
                runner.run(command, line)
            runner.stop_servers()                # a block's server lives until the block ends
        elif lang == "python":
            script = os.path.join(runner.cwd, f"readme_line_{line}.py")
            with open(script, "w", encoding="utf-8") as f:
                f.write(body)
            runner.run(f"python {os.path.basename(script)}", line)
        else:
            continue
        ran_blocks[lang] += 1
    seconds = time.monotonic() - start
    not_run = [(lang, line) for lang, line, _ in blocks if lang not in RUN]
    with capsys.disabled():
        print(f"\nREADME: ran {ran_blocks['bash']} bash blocks and {ran_blocks['python']} python blocks, "
              f"{len(runner.ran)} commands in {seconds:.0f} s; not run: "
              + ", ".join(f"{lang or 'plain'} block at line {line}" for lang, line in not_run))
        for line, command, s in runner.ran:
            print(f"  {s:6.1f} s  line {line:4d}  {command[:110]}")
    assert ran_blocks["bash"] >= MIN_BASH_BLOCKS and len(runner.ran) >= MIN_COMMANDS, (
        f"only {ran_blocks['bash']} bash blocks / {len(runner.ran)} commands ran: did the README lose its examples, "
        "or their ```bash fences?")
