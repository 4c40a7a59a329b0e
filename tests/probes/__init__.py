"""Small C probe programs, compiled with gcc at test time, and a way to run them filtered.

`build(name, dest)` compiles tests/probes/NAME.c into DEST (static if the host can, else
dynamic) and skips the test, naming the reason, when gcc is missing or the build fails.
`run_filtered(...)` forks, optionally switches to an unprivileged user, loads a seccomp
filter made by `ruripy.sandbox.seccomp.prepare` and execs the probe, then returns what it
printed: {check: result} plus the wait status.
"""

import os
import shutil
import subprocess

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def build(name: str, dest: str) -> str:
    """Compile tests/probes/NAME.c to DEST/NAME and return the path."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("gcc is not installed: the seccomp probes are compiled at test time")
    src = os.path.join(HERE, name + ".c")
    out = os.path.join(dest, name)
    errors = []
    for extra in (["-static"], []):
        r = subprocess.run(
            [gcc, "-O1", "-Wall", *extra, "-o", out, src, "-pthread"],
            capture_output=True,
            text=True,
        )
        if r.returncode == 0:
            os.chmod(out, 0o755)
            return out
        errors.append(r.stderr.strip())
    pytest.skip(f"could not compile {name}.c with {gcc}: {errors[-1][:500]}")


class ProbeRun:
    """What one probe run printed, and how it ended."""

    def __init__(self, output: str, status: int) -> None:
        self.output = output
        self.status = status
        self.results: dict[str, str] = {}
        for line in output.splitlines():
            check, _, result = line.rpartition(" ")
            self.results[check] = result

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def exit_code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None

    def __getitem__(self, check: str) -> str:
        return self.results[check]


def run_filtered(
    argv: list[str],
    flt=None,
    user=None,
    prepare_args: tuple | None = None,
) -> ProbeRun:
    """Fork; in the child drop to `user` (a pwd entry) if given, load the filter, exec argv.

    The filter is either `flt` (a Filter prepared here, in the parent) or, with
    `prepare_args`, prepared in the child itself from those arguments.
    """
    from ruripy.sandbox import seccomp

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            os.dup2(w, 1)
            if user is not None:
                os.setgroups([])
                os.setresgid(user.pw_gid, user.pw_gid, user.pw_gid)
                os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
            f = flt if prepare_args is None else seccomp.prepare(*prepare_args)
            if f is not None:
                f.load()
            os.execv(argv[0], argv)
        except BaseException as e:
            os.write(2, f"probe child: {e!r}\n".encode())
        finally:
            os._exit(127)
    os.close(w)
    chunks = []
    while True:
        data = os.read(r, 65536)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    return ProbeRun(b"".join(chunks).decode(errors="replace"), status)
