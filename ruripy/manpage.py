"""The manual page, ruripy(1), generated from typer's command tree.

`python -m ruripy.manpage --write` regenerates man/ruripy.1 (a test fails when the committed
page is stale); without --write the page goes to stdout. Every command, argument and option
comes from the tree; the runtime options are described once, in their own section. The date
is fixed so the output is reproducible: change DATE when the page's content changes.
"""

import os
import sys

DATE = "2026-11-25"
RUNTIME_PANEL = "Runtime options"

DESCRIPTION = """\
ruripy pulls distribution root filesystems (from its catalog, an LXC image server, an OCI
registry or a tarball), makes named containers from them with a saved profile, and runs
commands in them: rootless in a user namespace mapped with the caller's /etc/subuid and
/etc/subgid ranges, or as root in a real chroot with capabilities dropped. There is no
daemon: "ruripy run" and "ruripy exec" start in about the time of a Python interpreter.

IMAGE is a catalog name with an optional release (debian, debian:bookworm, alpine:3.20),
lxc:DISTRO/RELEASE[/VARIANT] for an LXC image-server product,
docker://[REGISTRY/]REPO[:TAG|@DIGEST] for an OCI or Docker image, or file:PATH (or the
path) of a rootfs tarball. Container names are 1 to 64 letters, digits, '_', '.' or '-',
starting with a letter or digit."""

RUNTIME_INTRO = """\
Given to create or import, these options are saved in the container's profile; given to
run, they apply to that run only; "ruripy config NAME --set KEY=VALUE" edits the profile.
A profile key is the long option name without the dashes, with '_' for '-' (cap_add,
read_only). exec takes -u, -w, -e and -t only."""

FILES = [
    ("$RURIPY_HOME", "The storage root when set."),
    ("$XDG_DATA_HOME/ruripy, ~/.local/share/ruripy", "The storage root of other users."),
    ("/var/lib/ruripy", "The storage root for root."),
    ("ROOT/images/ID/", "A pulled image: image.json and its pristine rootfs/."),
    (
        "ROOT/containers/NAME/",
        "A container: container.rec, profile.toml, and rootfs/ (or upper/ and work/ over "
        "its image).",
    ),
    ("ROOT/state/NAME.rec", "A running container: init pid, start time, namespaces."),
    ("ROOT/locks/", "Lock files, one per container name, and images.lock."),
    ("ROOT/cache/blobs/sha256/", "Downloaded archives and layers, by digest."),
    ("ROOT/tmp/", "Staging folders, renamed into place when complete."),
    ("/etc/subuid, /etc/subgid", "The id ranges a rootless container maps (65536 wanted)."),
]

ENVIRONMENT = [
    ("RURIPY_HOME", "Where ruripy keeps images, containers and state."),
    ("XDG_DATA_HOME", "Base of the default storage root ($XDG_DATA_HOME/ruripy)."),
    ("RURIPY_LXC_MIRROR", "Base URL of the LXC image server, for every command (--mirror)."),
    ("RURIPY_DEBUG", "Set to 1 to show Python tracebacks instead of one-line errors."),
    ("RURIPY_PROOT", "The proot program of the proot backend (default: proot from PATH)."),
]

EXIT_STATUS = [
    ("0", "Success; for run and exec, the command's own status."),
    (
        "125",
        "ruripy itself failed: a bad option, no such container, the host lacks a feature, "
        "a full disk (nothing half-made is left behind).",
    ),
    ("126", "The command exists but cannot be run."),
    ("127", "The command does not exist."),
    ("128+N", "The command was killed by signal N."),
]

EXAMPLES = [
    ("ruripy doctor", "What this host allows, and how to fix what it lacks."),
    ("ruripy pull debian:bookworm --name deb", "Pull an image and create container deb."),
    ("ruripy run deb", "A login shell in deb."),
    ("ruripy run deb -- apt-get update", "Run one command."),
    ("ruripy run --net none -b /srv:/srv:ro deb", "One run without network, /srv read-only."),
    ("ruripy start deb && ruripy exec deb -- ps", "Keep deb running, then join it."),
    ("ruripy config deb --set hostname=deb", "Change the saved profile."),
    ("ruripy export deb deb.tar.zst", "Back it up."),
]

SEE_ALSO = (
    "unshare(1), newuidmap(1), subuid(5), subgid(5), user_namespaces(7), capabilities(7), "
    "seccomp(2), proot(1), podman(1), systemd-nspawn(1)"
)


def esc(text: str) -> str:
    """Text for roff: backslashes and dashes escaped, no line starting with a control dot
    (and rich's markup escape, a backslash before '[', dropped)."""
    text = text.replace("\\[", "[").replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line[:1] in (".", "'") else line for line in text.split("\n"))


def _bold(word: str) -> str:
    return f"\\fB{esc(word)}\\fR"


def _ital(word: str) -> str:
    return f"\\fI{esc(word)}\\fR"


def _paragraphs(text: str) -> list[str]:
    out = []
    for para in text.strip().split("\n\n"):
        out += [".PP", esc(" ".join(para.split()))]
    return out


def _option_term(o) -> str:
    names = ", ".join(_bold(n) for n in sorted(o.opts, key=lambda n: len(n) == 2))
    names += "".join(", " + _bold(n) for n in o.secondary_opts)
    if not o.is_flag:
        names += " " + _ital(o.metavar or o.name.rstrip("_").upper())
    return names


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _help(p) -> str:
    text = " ".join((p.help or "").split())
    if p.rich_help_panel == RUNTIME_PANEL:  # the option table's help is a lower-case phrase
        text = text[:1].upper() + text[1:] + ("" if text.endswith((".", ")")) else ".")
    if getattr(p, "multiple", False) and "repeatable" not in text:
        text += " (repeatable)"
    return esc(text)


def _synopsis(name: str, cmd, params) -> str:
    parts = [_bold("ruripy"), _bold(name)]
    if any(p.param_type_name == "option" and "--help" not in p.opts for p in params):
        parts.append("[" + _ital("OPTIONS") + "]")
    for p in params:
        if p.param_type_name != "argument":
            continue
        word = _ital((p.metavar or p.name).upper())
        if p.nargs == -1:
            word += "..."
        parts.append(word if p.required else f"[{word}]")
    return " ".join(parts)


def render() -> str:
    import typer._click as click
    import typer.main

    from . import __version__, options
    from .cli import app

    group = typer.main.get_command(app)
    ctx = click.Context(group, info_name="ruripy", **group.context_settings)
    out = [
        f'.TH RURIPY 1 "{DATE}" "ruripy {__version__}" "User Commands"',
        ".nh",
        ".ad l",
        ".SH NAME",
        "ruripy \\- " + esc(_lower_first((group.help or "").strip().rstrip("."))),
        ".SH SYNOPSIS",
        f"{_bold('ruripy')} [{_bold('--version')}] [{_bold('--help')}] {_ital('COMMAND')} "
        f"[{_ital('ARGS')}...]",
        ".SH DESCRIPTION",
        *_paragraphs(DESCRIPTION),
        ".SH OPTIONS",
    ]
    for p in group.get_params(ctx):
        out += [".TP", _option_term(p), _help(p)]
    out.append(".SH COMMANDS")
    runtime = {}
    for name in group.list_commands(ctx):
        cmd = group.commands[name]
        if cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx, **cmd.context_settings)
        params = [p for p in cmd.get_params(sub) if not p.hidden]
        out += [".SS " + _synopsis(name, cmd, params), *_paragraphs(cmd.help or "")[1:]]
        shared = []
        for p in params:
            if p.param_type_name == "argument":
                out += [".TP", _ital(p.name.upper()), _help(p)]
            elif p.rich_help_panel == RUNTIME_PANEL:
                shared.append(p)
                runtime.setdefault(p.name, p)
            elif "--help" not in p.opts:
                out += [".TP", _option_term(p), _help(p)]
        if shared:
            if len(shared) == len(options.CLI_OPTIONS):
                note = "It takes every runtime option (see RUNTIME OPTIONS)."
            else:
                names = ", ".join(_bold(max(p.opts, key=len)) for p in shared)
                note = f"It takes the runtime options {names} (see RUNTIME OPTIONS)."
            out += [".PP", note]
    out += [".SH RUNTIME OPTIONS", *_paragraphs(RUNTIME_INTRO)]
    for p in runtime.values():
        out += [".TP", _option_term(p), _help(p)]
    for title, rows in (("FILES", FILES), ("ENVIRONMENT", ENVIRONMENT)):
        out.append(".SH " + title)
        for term, text in rows:
            out += [".TP", _bold(term), esc(text)]
    out.append(".SH EXIT STATUS")
    for term, text in EXIT_STATUS:
        out += [".TP", _bold(term), esc(text)]
    out += [".SH EXAMPLES"]
    for command, text in EXAMPLES:
        out += [".TP", _bold(command), esc(text)]
    out += [".SH SEE ALSO", esc(SEE_ALSO)]
    return "\n".join(out) + "\n"


def page_path() -> str:
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(repo, "man", "ruripy.1")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    text = render()
    if "--write" in argv:
        os.makedirs(os.path.dirname(page_path()), exist_ok=True)
        with open(page_path(), "w") as f:
            f.write(text)
        print(page_path())
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
