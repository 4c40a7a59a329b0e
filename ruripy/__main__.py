"""Entry point. `run` and `exec` take a fast path that never imports typer, rich or requests.

Every other command, and any `--help`, goes to the typer app in ruripy.cli.
"""

import os
import sys


def _fail(message: str, status: int = 125) -> None:
    sys.stderr.write(f"ruripy: {message}\n")
    sys.stderr.flush()
    os._exit(status)


def parse_runtime_args(command: str, args: list[str]) -> tuple[str, dict, list[str]]:
    """Parse `NAME [OPTIONS] [--] [COMMAND...]` for run/exec by the option table.

    Options may come before or after NAME; the first word after NAME that is not an
    option starts the command. Returns (name, overrides, argv).
    """
    from . import options

    allowed = None if command == "run" else set(options.EXEC_OPTION_KEYS)
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
        flag, eq, value = a.partition("=") if a.startswith("--") else (a[:2], "", a[2:])
        if not a.startswith("--") and value:
            eq = "="
        opt = options.BY_FLAG.get(flag)
        if opt is None or (allowed is not None and opt.key not in allowed):
            raise _usage(command, f"unknown option {flag} for {command}")
        if opt.kind == "bool":
            if eq:
                raise _usage(command, f"option {flag} takes no value")
            given[opt.key] = flag != opt.off
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                raise _usage(command, f"option {flag} needs a value ({opt.metavar or 'VALUE'})")
            value = args[i + 1]
            i += 2
        else:
            i += 1
        if opt.kind == "list":
            given.setdefault(opt.key, []).append(value)
        else:
            given[opt.key] = value
    if name is None:
        raise _usage(command, f"{command} needs a container name")
    overrides = {k: options.BY_KEY[k].check(v) for k, v in given.items()}
    return name, overrides, args[i:]


def _usage(command: str, message: str) -> Exception:
    from .errors import RuripyError

    return RuripyError(f"{message}; see 'ruripy {command} --help'.")


def fast(command: str, args: list[str]) -> int:
    from . import lifecycle
    from .errors import RuripyError

    try:
        name, overrides, argv = parse_runtime_args(command, args)
        if command == "exec":
            if not argv:
                raise RuripyError("exec needs a command to run; e.g. 'ruripy exec NAME -- sh'.")
            return lifecycle.exec_(name, overrides, argv)
        return lifecycle.run(name, overrides, argv)
    except RuripyError as e:
        if os.environ.get("RURIPY_DEBUG") == "1":
            import traceback

            traceback.print_exc()
        _fail(str(e), e.status)
    except KeyboardInterrupt:
        _fail("interrupted.", 130)
    return 125


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] in ("run", "exec") and not any(a in ("--help", "-h") for a in args[1:3]):
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
