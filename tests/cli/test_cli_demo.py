"""`fedbroker demo` interrupted, through its real entry point: every process it started stops and its
working folder goes, whether Ctrl-C is typed at a terminal or SIGINT is sent to it alone."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

DEMO = [sys.executable, "-m", "broker", "demo", "--backend", "simulated", "--time-scale", "0.01"]
FOLDER = re.compile(r"working folder: (\S+)")
SPINNER = re.compile(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] waiting for workload 1 of 4 \(wl-\w+\) \(\d+s\)")


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEDBROKER_")}
    # Its working folder is made here, so that nothing it leaves can hide among others' files.
    return {**env, "TMPDIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}


def descendants(pid: int) -> dict[int, bytes]:
    """Every process below pid, with its command line (to tell it from a later one with its pid)."""
    found: dict[int, bytes] = {}
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                found[child] = command_line(child)
                todo.append(child)
    return found


def command_line(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int, cmdline: bytes) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X") and command_line(pid) == cmdline


def started_by_the_demo(processes: dict[int, bytes]) -> None:
    """The broker and both agents, as the demo runs them."""
    commands = [cmd.split(b"\0") for cmd in processes.values()]
    assert sum(b"serve" in cmd for cmd in commands) == 1, commands
    assert sum(b"agent" in cmd for cmd in commands) == 2, commands


def test_ctrl_c_at_a_terminal_stops_everything_and_removes_the_folder(tmp_path: Path) -> None:
    pid, terminal = pty.fork()
    if pid == 0:  # the child: the demo, on a terminal of its own (Ctrl-C reaches its process group)
        try:
            os.execve(sys.executable, DEMO, demo_env(tmp_path))
        finally:
            os._exit(127)
    screen = b""

    def read(until: re.Pattern[str] | None, timeout: float) -> None:
        nonlocal screen
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until is not None and until.search(screen.decode(errors="replace")):
                return
            if select.select([terminal], [], [], 0.2)[0]:
                try:
                    chunk = os.read(terminal, 4096)
                except OSError:  # EIO: the demo and everything it started have closed the terminal
                    return
                if not chunk:
                    return
                screen += chunk
        raise AssertionError(f"timed out; the terminal shows:\n{screen.decode(errors='replace')}")

    status: int | None = None
    try:
        read(SPINNER, 120)  # a long wait: on a terminal, the status line shows what it waits for
        started = descendants(pid)
        started_by_the_demo(started)
        os.write(terminal, b"\x03")  # Ctrl-C, typed
        read(None, 60)
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(terminal)
        if status is None:
            os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
    text = screen.decode(errors="replace")
    assert status is not None and os.waitstatus_to_exitcode(status) == 130, text
    assert "interrupted: every process stopped" in text and "Traceback" not in text, text
    assert [p for p, cmd in started.items() if alive(p, cmd)] == []
    folder = FOLDER.search(text)
    assert folder and folder.group(1).startswith(str(tmp_path)), text
    assert not Path(folder.group(1)).exists()
    assert list(tmp_path.iterdir()) == []


def test_sigint_to_the_demo_alone_stops_what_it_started_and_a_pipe_gets_no_status_line(
    tmp_path: Path,
) -> None:
    demo = subprocess.Popen(
        DEMO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=demo_env(tmp_path),
        start_new_session=True,  # the signal goes to the demo only, not its children: it must stop them
    )
    try:
        assert demo.stdout is not None
        lines: list[str] = []
        while sum(line.startswith("submitted ") for line in lines) < 4:
            line = demo.stdout.readline()
            assert line, "".join(lines) + (demo.stderr.read() if demo.stderr else "")
            lines.append(line)
        started = descendants(demo.pid)
        started_by_the_demo(started)
        time.sleep(1)  # waiting for the first workload, which takes 36 s at this time scale
        demo.send_signal(signal.SIGINT)
        out, err = demo.communicate(timeout=60)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
    assert demo.returncode == 130, err
    assert err == "\ninterrupted: every process stopped\n", err  # no status line, no traceback
    assert "\r" not in "".join(lines) + out and "\x1b" not in "".join(lines) + out
    assert [p for p, cmd in started.items() if alive(p, cmd)] == []
    folder = FOLDER.search(lines[0])
    assert folder and not Path(folder.group(1)).exists()
    assert list(tmp_path.iterdir()) == []
