"""The command-line interface (typer). `run` and `exec` normally take the argv fast path in
__main__; their commands here give them help text and completion, and behave the same.

Output: tables for people, `--json` (one document on stdout) for scripts; errors are one
or two sentences on stderr with the contract's exit statuses, never a traceback unless
RURIPY_DEBUG=1.
"""

import functools
import inspect
import json
import os
import sys
from typing import Annotated, Optional

import typer

from . import __version__, options
from .errors import RuripyError

app = typer.Typer(
    name="ruripy",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    help="Run Linux distros in containers, rootless or as root, without a daemon.",
)

RUNTIME_PANEL = "Runtime options"


def fail(message: str, status: int = 125) -> None:
    raise RuripyError(message, status)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _runtime_params(keys=None) -> list[inspect.Parameter]:
    """typer parameters for the runtime options of the table (all default to "not given")."""
    params = []
    for opt in options.CLI_OPTIONS:
        if keys is not None and opt.key not in keys:
            continue
        names = [opt.long] + ([opt.short] if opt.short else [])
        if opt.kind == "bool":
            decl = f"{opt.long}/{opt.off}" if opt.off else opt.long
            names = [decl] + ([opt.short] if opt.short else [])
            ann = Optional[bool]  # noqa: UP045 (typer reads the annotation)
        elif opt.kind == "list":
            ann = Optional[list[str]]  # noqa: UP045
        else:
            ann = Optional[str]  # noqa: UP045
        info = typer.Option(
            *names,
            help=opt.help,
            metavar=opt.metavar,
            rich_help_panel=RUNTIME_PANEL,
            show_default=False,
        )
        params.append(
            inspect.Parameter(
                "opt_" + opt.key,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[ann, info],
            )
        )
    return params


def with_runtime_options(keys=None):
    """Add the runtime option table to a command; the command gets `given` (checked values)."""

    def wrap(func):
        sig = inspect.signature(func)
        base = [p for p in sig.parameters.values() if p.name != "given"]

        @functools.wraps(func)
        def command(**kwargs):
            given = {}
            for k in list(kwargs):
                if k.startswith("opt_"):
                    v = kwargs.pop(k)
                    if v is not None and v != []:
                        key = k[4:]
                        given[key] = options.BY_KEY[key].check(v)
            return func(given=given, **kwargs)

        command.__signature__ = sig.replace(parameters=base + _runtime_params(keys))
        command.__annotations__ = {
            p.name: p.annotation for p in command.__signature__.parameters.values()
        }
        return command

    return wrap


def _version(value: bool) -> None:
    if value:
        print(f"ruripy {__version__}")
        raise typer.Exit()


# Global options (given before the command).
GLOBAL = {"quiet": False}


@app.callback()
def main_callback(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
    quiet: Annotated[
        bool,
        typer.Option("--quiet", "-q", help="No progress output (pull, import, export)."),
    ] = False,
) -> None:
    """Run Linux distros in containers, rootless or as root, without a daemon."""
    GLOBAL["quiet"] = quiet


# -- images ----------------------------------------------------------------------------------

IMAGE_HELP = (  # rich markup: "\\[" keeps "[/VARIANT]" from reading as a closing tag
    "debian, debian:12, lxc:DISTRO/RELEASE\\[/VARIANT], docker://[REGISTRY/]REPO[:TAG], "
    "file:PATH or the path of a rootfs tarball."
)
MIRROR_HELP = (
    "Base URL of an LXC image server (default: $RURIPY_LXC_MIRROR, else "
    "https://images.linuxcontainers.org)."
)
ARCH_HELP = "Architecture to pull (amd64, arm64, armhf, ...; default: this machine's)."


@app.command("pull")
def pull_cmd(
    image: Annotated[str, typer.Argument(help=IMAGE_HELP)],
    name: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--name", help="Also create container NAME from the image.", metavar="NAME"),
    ] = None,
    arch: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--arch", help=ARCH_HELP, metavar="ARCH"),
    ] = None,
    mirror: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--mirror", help=MIRROR_HELP, metavar="URL"),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow plain-HTTP registries that are not loopback.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
    json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Download an image (catalog, LXC image server, registry or tarball) into the store."""
    from .images import pull
    from .store import Store, check_name

    store = Store()
    if name is not None:
        check_name(name)
        if store.container_exists(name):
            fail(f"container {name} already exists; pick another name or remove it.")
    quiet = quiet or GLOBAL["quiet"]
    info = pull.pull(image, store=store, arch=arch, mirror=mirror, insecure=insecure, quiet=quiet)
    if not quiet and not info.get("up_to_date"):
        stats = info.get("stats") or {}
        what = [f"{stats['entries']} entries"] if isinstance(stats.get("entries"), int) else []
        what += [_size(info["rootfs_size"])] if info.get("rootfs_size") else []
        sys.stderr.write(f"Pulled {info['name']}" + (f": {', '.join(what)}" if what else "") + "\n")
    if name is not None:
        from . import containers

        containers.create(name, info["name"], {})
        info = dict(info, container=name)
    if json_:
        print_json(info)
    else:
        print(info["name"] if name is None else name)


@app.command("images")
def images_cmd(json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """List pulled images: name, kind, architecture, size, created, digest."""
    from .images import install
    from .store import Store

    rows = install.list_images(Store())
    if json_:
        print_json(rows)
        return
    _table(
        ["NAME", "KIND", "ARCH", "SIZE", "CREATED", "DIGEST"],
        [
            [
                r.get("name"),
                r.get("kind") or "-",
                r.get("arch") or "-",
                _size(r.get("rootfs_size", r.get("size"))),
                str(r.get("created") or "-").replace("T", " ").rstrip("Z"),
                str(r.get("digest") or "-").removeprefix("sha256:")[:12],
            ]
            for r in rows
        ],
    )


@app.command("rmi")
def rmi_cmd(
    images: Annotated[list[str], typer.Argument(help="Images to remove (see 'ruripy images').")],
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Remove even if containers use it.")
    ] = False,
) -> None:
    """Remove pulled images; refused while containers use them unless --force."""
    from .images import install
    from .store import Store

    failed = None
    for ref in images:
        try:
            meta = install.remove_image(Store(), ref, force)
        except RuripyError as e:
            sys.stderr.write(f"ruripy: {e}\n")
            failed = e
            continue
        if meta.get("orphaned_containers"):
            sys.stderr.write(
                f"ruripy: warning: containers {', '.join(meta['orphaned_containers'])} used "
                f"{meta['name']} and will not start any more.\n"
            )
        print(meta["name"])
    if failed:
        raise typer.Exit(failed.status)


@app.command("search")
def search_cmd(
    term: Annotated[
        Optional[str],  # noqa: UP045
        typer.Argument(help="Show only distros whose name, release or description has TERM."),
    ] = None,
    mirror: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--mirror", help=MIRROR_HELP, metavar="URL"),
    ] = None,
    arch: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--arch", help=ARCH_HELP, metavar="ARCH"),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List the catalog's distros and releases that the image server has for ARCH."""
    from .images import pull

    rows = pull.search(term, mirror=mirror, arch=arch)
    if json_:
        print_json(rows)
        return
    if not rows:
        fail(f"nothing matches {term!r}; run 'ruripy search' without a term to see everything.")
    _table(
        ["NAME", "RELEASES", "DESCRIPTION"],
        [
            [
                r["name"],
                ", ".join(x["name"] + ("*" if x["default"] else "") for x in r["releases"]),
                r["description"],
            ]
            for r in rows
        ],
    )
    print("* default release. Pull with 'ruripy pull NAME[:RELEASE]' or lxc:DISTRO/RELEASE.")


# -- containers ------------------------------------------------------------------------------


RURI_CONFIG_HELP = (
    "Start the profile from a ruri config file (ruri -D); keys ruripy cannot honour are "
    "named in warnings. Options given here go on top."
)


@app.command("create")
@with_runtime_options()
def create_cmd(
    name: Annotated[str, typer.Argument(help="Name of the new container.")],
    image: Annotated[str, typer.Argument(help="A pulled image (see 'ruripy images').")],
    given: dict,
    ruri_config: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--ruri-config", help=RURI_CONFIG_HELP, metavar="FILE"),
    ] = None,
) -> None:
    """Create a container from a pulled image (an overlay over it: instant, almost no disk)."""
    from . import containers

    base = containers.ruri_profile(ruri_config) if ruri_config else None
    containers.create(name, image, given, base)
    print(name)


@app.command("import")
@with_runtime_options()
def import_cmd(
    name: Annotated[str, typer.Argument(help="Name of the new container.")],
    source: Annotated[str, typer.Argument(help="A rootfs folder or tarball.")],
    given: dict,
    ruri_config: Annotated[
        Optional[str],  # noqa: UP045
        typer.Option("--ruri-config", help=RURI_CONFIG_HELP, metavar="FILE"),
    ] = None,
) -> None:
    """Create a container from a rootfs folder or tarball (.tar, .gz, .xz, .zst, .bz2)."""
    from . import containers

    base = containers.ruri_profile(ruri_config) if ruri_config else None
    containers.import_(name, source, given, base, quiet=GLOBAL["quiet"])
    print(name)


@app.command("export")
def export_cmd(
    name: Annotated[str, typer.Argument(help="The container.")],
    file: Annotated[str, typer.Argument(help="Output file (.tar .tar.gz .tar.xz .tar.zst) or -.")],
) -> None:
    """Write a container's root filesystem as a tarball ('-' writes tar to stdout)."""
    from . import containers

    containers.export(name, file, quiet=GLOBAL["quiet"])


def _fast(command: str, args: list[str]) -> None:
    from .__main__ import fast

    sys.stdout.flush()
    code = fast(command, args)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@app.command(
    "run",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@with_runtime_options()
def run_cmd(
    name: Annotated[str, typer.Argument(help="The container.")],
    command: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Argument(help="Command and arguments (default: a login shell)."),
    ] = None,
    given: dict = None,
) -> None:
    """Run a command in a container (a login shell by default); joins it if running."""
    _fast("run", sys.argv[2:])


@app.command(
    "exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@with_runtime_options(options.EXEC_OPTION_KEYS)
def exec_cmd(
    name: Annotated[str, typer.Argument(help="The running container.")],
    command: Annotated[list[str], typer.Argument(help="Command and arguments.")],
    given: dict = None,
) -> None:
    """Run a command in a running container, joining its namespaces."""
    _fast("exec", sys.argv[2:])


@app.command("start")
def start_cmd(name: Annotated[str, typer.Argument(help="The container.")]) -> None:
    """Start a container detached: its init stays up for later 'exec'."""
    from . import lifecycle

    if not lifecycle.start(name):
        sys.stderr.write(f"ruripy: container {name} is already running.\n")


@app.command("stop")
def stop_cmd(
    name: Annotated[str, typer.Argument(help="The container.")],
    time_: Annotated[
        float, typer.Option("--time", "-t", help="Seconds to wait before SIGKILL.", min=0)
    ] = 10,
) -> None:
    """Stop a running container: SIGTERM to everything in it, then SIGKILL."""
    from . import lifecycle

    if not lifecycle.stop(name, time_):
        sys.stderr.write(f"ruripy: container {name} is not running.\n")


@app.command("ps")
def ps_cmd(json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """List running containers: name, init pid, backend, since."""
    from . import running
    from .store import Store

    rows = [
        {"name": n, "pid": s["pid"], "backend": s.get("backend"), "since": s.get("since")}
        for n, s in running.all_states(Store().ensure())
    ]
    if json_:
        print_json(rows)
        return
    _table(
        ["NAME", "PID", "BACKEND", "SINCE"],
        [[r["name"], r["pid"], r["backend"], _when(r["since"])] for r in rows],
    )


def _when(ts) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _size(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return str(n)


def _table(header: list[str], rows: list[list]) -> None:
    cols = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cols) for i in range(len(header))]
    for r in cols:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


@app.command("list")
def list_cmd(json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """List every container with its image, backend, storage, size and status."""
    from . import containers
    from .store import Store

    rows = containers.listing(Store().ensure())
    if json_:
        print_json(rows)
        return
    _table(
        ["NAME", "IMAGE", "BACKEND", "STORAGE", "SIZE", "STATUS"],
        [
            [
                r["name"],
                r["image"] or "-",
                r["backend"],
                r["storage"],
                _size(r.get("size")),
                r["status"],
            ]
            for r in rows
        ],
    )


app.command("ls", help="Alias of list.")(list_cmd)


@app.command("rm")
def rm_cmd(
    names: Annotated[list[str], typer.Argument(help="Containers to remove.")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Stop running ones first.")] = False,
) -> None:
    """Remove containers (and their files)."""
    from . import containers

    failed = None
    for n in names:
        try:
            containers.remove(n, force)
        except RuripyError as e:
            sys.stderr.write(f"ruripy: {e}\n")
            failed = e
    if failed:
        raise typer.Exit(failed.status)


@app.command("rename")
def rename_cmd(
    old: Annotated[str, typer.Argument(help="Current name.")],
    new: Annotated[str, typer.Argument(help="New name.")],
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Rename it even while it runs.")
    ] = False,
) -> None:
    """Rename a stopped container."""
    from . import containers

    containers.rename(old, new, force)


@app.command("clone")
def clone_cmd(
    src: Annotated[str, typer.Argument(help="The container to copy.")],
    new: Annotated[str, typer.Argument(help="Name of the copy.")],
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Copy it even while it runs.")
    ] = False,
) -> None:
    """Copy a container (instant with overlay: only its changes are copied)."""
    from . import containers

    containers.clone(src, new, force)
    print(new)


@app.command("config")
def config_cmd(
    name: Annotated[str, typer.Argument(help="The container.")],
    set_: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option(
            "--set", help="Set KEY=VALUE in the profile (repeatable).", metavar="KEY=VALUE"
        ),
    ] = None,
    unset: Annotated[
        Optional[list[str]],  # noqa: UP045
        typer.Option("--unset", help="Reset KEY to its default (repeatable).", metavar="KEY"),
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Show a container's profile, or edit it with --set and --unset."""
    from . import profile
    from .store import Store, check_name

    check_name(name)
    store = Store().ensure()
    store.container_info(name)
    path = os.path.join(store.container_dir(name), profile.PROFILE)
    with store.lock(name):
        prof = profile.load_cached(store.container_dir(name))
        if set_ or unset:
            if unset:
                profile.unset(prof, unset)
            if set_:
                profile.set_values(prof, set_)
            profile.save(path, prof)
    if json_:
        print_json(prof)
    elif not (set_ or unset):
        sys.stdout.write(profile.dumps(prof))


# -- everyday use ----------------------------------------------------------------------------


@app.command("doctor")
def doctor_cmd(json_: Annotated[bool, typer.Option("--json", help="JSON output.")] = False) -> None:
    """Check what this host allows (user namespaces, id maps, overlayfs, ...) and how to fix
    what it lacks. Exits 0 even when something is missing."""
    from . import doctor

    checks = doctor.run_checks()
    if json_:
        print_json(doctor.as_json(checks))
    else:
        sys.stdout.write(doctor.report(checks))


@app.command("completion")
def completion_cmd(
    shell: Annotated[str, typer.Argument(help="bash, zsh or fish.", metavar="SHELL")],
) -> None:
    """Print the completion script for SHELL (README: 'Shell completion' says where it goes)."""
    from . import completion

    sys.stdout.write(completion.generate(shell))


def main() -> None:
    """Run the typer app, turning RuripyError into one line on stderr and status 125."""
    try:
        code = app(prog_name="ruripy", standalone_mode=False)
        if isinstance(code, int) and code:  # typer.Exit(N) is returned, not raised, here
            sys.exit(code)
    except RuripyError as e:
        if os.environ.get("RURIPY_DEBUG") == "1":
            raise
        sys.stderr.write(f"ruripy: {e}\n")
        sys.exit(e.status)
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.stderr.write("ruripy: aborted.\n")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.stderr.write("ruripy: interrupted.\n")
        sys.exit(130)
    except Exception as e:  # click usage errors and the like
        if os.environ.get("RURIPY_DEBUG") == "1":
            raise
        _usage_error(e)


def _usage_error(e: Exception) -> None:
    """A usage error (click's, or anything unexpected) as one line, status 125."""
    if type(e).__name__ == "NoArgsIsHelpError":  # plain `ruripy`: the help is on stdout
        sys.exit(0)
    show = getattr(e, "format_message", None)
    msg = " ".join((show() if show else f"{type(e).__name__}: {e}").split())
    ctx = getattr(e, "ctx", None)
    hint = f" See '{ctx.command_path} --help'." if ctx is not None else ""
    end = "" if msg.endswith((".", "?", "!")) else "."
    sys.stderr.write(f"ruripy: {msg}{end}{hint}\n")
    sys.exit(125)
