"""Entry point. `run`, `exec` and `create` take a fast path that never imports typer or rich.

Every other command, and any `--help`, goes to the typer app in ruripy.cli.
"""

import gc
import os
import sys


def _fail(message: str, status: int = 125) -> None:
    sys.stderr.write(f"ruripy: {message}\n")
    sys.stderr.flush()
    os._exit(status)


def _take_option(command: str, args: list[str], i: int, allowed, given: dict) -> int:
    """Read the option at args[i] (and its value) into `given`; return the next index.

    `allowed`: option keys this command takes (None: all); "--ruri-config" is given to
    create only, under that key.
    """
    from . import options

    a = args[i]
    flag, eq, value = a.partition("=") if a.startswith("--") else (a[:2], "", a[2:])
    if not a.startswith("--") and value:
        eq = "="
    opt = options.BY_FLAG.get(flag)
    ruri = flag == "--ruri-config" and command == "create"
    if (opt is None and not ruri) or (opt and allowed is not None and opt.key not in allowed):
        raise _usage(command, f"unknown option {flag} for {command}")
    if opt is not None and opt.kind == "bool":
        if eq:
            raise _usage(command, f"option {flag} takes no value")
        given[opt.key] = flag != opt.off
        return i + 1
    if not eq:
        if i + 1 >= len(args):
            metavar = opt.metavar if opt is not None else "FILE"
            raise _usage(command, f"option {flag} needs a value ({metavar or 'VALUE'})")
        value = args[i + 1]
        i += 1
    if opt is None:
        given["ruri_config"] = value
    elif opt.kind == "list":
        given.setdefault(opt.key, []).append(value)
    else:
        given[opt.key] = value
    return i + 1


def _checked(given: dict) -> dict:
    from . import options

    return {k: options.BY_KEY[k].check(v) for k, v in given.items()}


def parse_runtime_args(command: str, args: list[str]) -> tuple[str, dict, list[str]]:
    """Parse `NAME [OPTIONS] [--] [COMMAND...]` for run/exec by the option table.

    Options may come before or after NAME; the first word after NAME that is not an
    option starts the command. Returns (name, overrides, argv).
    """
    name = None
    given: dict = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            if name is None:
                name = a
                i += 1
                continue
            break
        i = _take_option(command, args, i, _allowed(command), given)
    if name is None:
        raise _usage(command, f"{command} needs a container name")
    return name, _checked(given) if given else {}, args[i:]


def _allowed(command: str) -> set | None:
    """Option keys `command` takes (None: all). The option table is loaded only when an
    option is given: `ruripy exec NAME CMD` does not need it."""
    from . import options

    return None if command == "run" else set(options.EXEC_OPTION_KEYS)


def parse_create_args(args: list[str]) -> tuple[str, str, dict, str | None]:
    """Parse `create NAME IMAGE [OPTIONS]` (options anywhere) by the option table.

    Returns (name, image, overrides, ruri_config).
    """
    positional: list[str] = []
    given: dict = {}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            positional.extend(args[i + 1 :])
            break
        if not a.startswith("-") or a == "-":
            positional.append(a)
            i += 1
            continue
        i = _take_option("create", args, i, None, given)
    if len(positional) != 2:
        raise _usage("create", "create needs a container name and an image, and nothing more")
    ruri_config = given.pop("ruri_config", None)
    return positional[0], positional[1], _checked(given), ruri_config


def _usage(command: str, message: str) -> Exception:
    from .errors import RuripyError

    return RuripyError(f"{message}; see 'ruripy {command} --help'.")


def fast(command: str, args: list[str]) -> int:
    from .errors import RuripyError

    try:
        if command == "create":  # no typer: 'create' should take well under a second
            from . import containers

            name, image, overrides, ruri_config = parse_create_args(args)
            base = containers.ruri_profile(ruri_config) if ruri_config else None
            containers.create(name, image, overrides, base)
            sys.stdout.write(name + "\n")
            return 0
        name, overrides, argv = parse_runtime_args(command, args)
        if command == "exec":
            if not argv:
                raise RuripyError("exec needs a command to run; e.g. 'ruripy exec NAME -- sh'.")
            from . import running

            return running.exec_(name, overrides, argv)
        from . import lifecycle

        return lifecycle.run(name, overrides, argv)
    except RuripyError as e:
        if os.environ.get("RURIPY_DEBUG") == "1" and sys.meta_path is not None:
            import traceback  # not once inside a container (process.seal_imports)

            traceback.print_exc()
        _fail(str(e), e.status)
    except KeyboardInterrupt:
        _fail("interrupted.", 130)
    return 125


def setid_problem() -> str | None:
    """Why ruripy refuses to run set-id (P0-N6): real and effective ids must be equal.

    Python cannot be made safe setuid (PYTHONPATH, PYTHONHOME, site packages ...).
    """
    ruid, euid, _ = os.getresuid()
    rgid, egid, _ = os.getresgid()
    if ruid != euid or rgid != egid:
        return (
            f"refusing to run with real and effective ids that differ (uid {ruid}/{euid}, "
            f"gid {rgid}/{egid}): ruripy must never be setuid or setgid; run it as yourself, "
            "or as root with sudo."
        )
    return None


SEALED = "_RURIPY_SEALED"  # set for the one re-execution from the sealed copy
MFD_EXEC = 0x10  # Linux 6.3+: the memfd may be executed even under vm.memfd_noexec=1


def sealed_reexec() -> None:
    """As root, re-execute from a sealed memfd copy of the interpreter (P0-E8).

    CVE-2019-5736: a container's root can make the process that executes the container's
    program run its own binary again (`#!/proc/self/exe`) and then write to that binary
    through /proc/PID/exe. Every ruripy process that enters a container descends from this
    one, so running from a private, sealed, unwritable copy leaves no host file to write.
    """
    if os.readlink("/proc/self/exe").startswith("/memfd:ruripy"):
        os.environ.pop(SEALED, None)
        return
    if os.environ.get(SEALED):
        _fail("could not re-execute from a sealed copy of the interpreter; refusing to go on.")
    import fcntl

    try:
        src = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
        try:
            flags = os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING
            try:
                fd = os.memfd_create("ruripy", flags | MFD_EXEC)
            except OSError:  # kernels before 6.3 know no MFD_EXEC
                fd = os.memfd_create("ruripy", flags)
            size = os.fstat(src).st_size
            done = 0
            while done < size:
                n = os.sendfile(fd, src, done, size - done)
                if n == 0:
                    raise OSError(5, "short copy of the interpreter")
                done += n
        finally:
            os.close(src)
        fcntl.fcntl(
            fd,
            fcntl.F_ADD_SEALS,
            fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE,
        )
        env = dict(os.environ)
        env[SEALED] = "1"
        os.execve(f"/proc/self/fd/{fd}", [sys.executable, *sys.orig_argv[1:]], env)
    except OSError as e:
        _fail(
            f"cannot run from a sealed copy of the interpreter ({e.strerror}), which privileged "
            "containers need (CVE-2019-5736); check that vm.memfd_noexec is 0 or 1."
        )


def main() -> None:
    problem = setid_problem()
    if problem:
        _fail(problem)
    args = sys.argv[1:]
    while args and args[0] in ("-q", "--quiet"):  # global flags (cli.py) before the command
        args = args[1:]
    if args and args[0] in ("run", "exec", "start") and os.geteuid() == 0:
        sealed_reexec()
    fast_commands = ("run", "exec", "create")
    helping = {"--help", "-h"}.intersection(args[1:] if args[:1] == ["create"] else args[1:3])
    if args and args[0] in fast_commands and not helping:
        # A short-lived process that makes no reference cycles worth collecting: without
        # the cyclic collector the imports of the start-up run without its pauses.
        gc.disable()
        code = fast(args[0], args[1:])
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
    if args and args[0] == "__complete":  # shell completion at TAB time: names only, no typer
        from .completion import answer

        code = answer(args[1:])
        sys.stdout.flush()
        os._exit(code)
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
