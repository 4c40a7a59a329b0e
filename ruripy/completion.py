"""Shell completion: bash, zsh and fish scripts generated from the command tree, and the
`ruripy __complete KIND [PREFIX]` answers they ask for at TAB time.

The scripts hold everything static (commands, options per command, which options take a
value, choices); only container and image names are asked for, through the argv fast path
in __main__, which never imports typer (a TAB costs one interpreter start, not a typer
start). `python -m ruripy.completion --write` regenerates completions/; the tests fail when
a committed file is stale. `ruripy completion SHELL` prints the same script.

What to complete is a *kind*: sources joined by '+', each one of `w:a,b,c` (these words),
`eq:a,b` (these words followed by '=' and no space), `file`, or a dynamic source answered
by `answer()` (`containers`, `running`, `images`, `catalog`). An empty kind completes
nothing; the positional kind `stop` means "the container's own command starts here".

Importing this module is cheap (standard library only at the top): the fast path does it.
"""

import os
import sys

SHELLS = ("bash", "zsh", "fish")
DYNAMIC = ("containers", "running", "images", "catalog")
FILES = {"bash": "ruripy.bash", "zsh": "_ruripy", "fish": "ruripy.fish"}

# Positional arguments that do not name an existing container, by "command.argument".
ARG_KINDS = {
    "pull.image": "catalog+file",
    "rmi.images": "images",
    "search.term": "",
    "create.name": "",
    "create.image": "images",
    "import.name": "",
    "import.source": "file",
    "export.file": "file",
    "exec.name": "running",
    "stop.name": "running",
    "run.command": "stop",
    "exec.command": "stop",
    "rename.new": "",
    "clone.new": "",
    "completion.shell": "w:" + ",".join(SHELLS),
}
CONTAINER_ARGS = ("name", "names", "old", "src")


# -- TAB time (fast path) --------------------------------------------------------------------


def _names(kind: str) -> list[str]:
    from .store import Store

    store = Store()
    if kind == "containers":
        return store.container_names()
    if kind == "running":
        from . import running

        return [n for n, _ in running.all_states(store)]
    if kind == "images":
        return sorted({str(m.get("name")) for _, m in store.image_names() if m.get("name")})
    if kind == "catalog":
        return _catalog_names()
    return []


def _catalog_names() -> list[str]:
    """DISTRO and DISTRO:RELEASE for every catalog file, read by a line scan: tomllib,
    dataclasses and difflib (images.catalog) would double the cost of a TAB."""
    pkg = os.path.dirname(os.path.abspath(__file__))
    # the same places as images.catalog.catalog_dirs()
    for d in (os.path.join(pkg, "catalog"), os.path.join(os.path.dirname(pkg), "rootfs-images")):
        try:
            files = sorted(f for f in os.listdir(d) if f.endswith(".toml"))
        except OSError:
            continue
        out = []
        for f in files:
            distro = f[:-5]
            out.append(distro)
            with open(os.path.join(d, f), encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    line = line.strip()
                    if line.startswith("[releases.") and line.endswith("]"):
                        out.append(f"{distro}:{line[10:-1].strip().strip(chr(34))}")
        if out:
            return out
    return []


def answer(args: list[str]) -> int:
    """`ruripy __complete KIND [PREFIX]`: matching names, one a line; silent on any error."""
    kind = args[0] if args else ""
    prefix = args[1] if len(args) > 1 else ""
    try:
        found = [n for n in _names(kind) if n.startswith(prefix)]
    except Exception:  # a TAB must never print a traceback into the user's prompt
        if os.environ.get("RURIPY_DEBUG") == "1":
            raise
        return 0
    if found:
        sys.stdout.write("\n".join(found) + "\n")
    return 0


# -- the command tree, as plain data -----------------------------------------------------------


def _option_kind(param) -> str:
    from . import options

    if param.is_flag:
        return ""
    if param.name.startswith("opt_"):
        key = param.name[4:]
        if key == "seccomp":
            return "w:default,off+file"
        if key == "bind":
            return "file"
        opt = options.BY_KEY[key]
        return "w:" + ",".join(opt.choices) if opt.choices else ""
    if (param.metavar or "").upper() in ("FILE", "DIR", "PATH"):
        return "file"
    if param.name == "arch":
        return "w:" + ",".join(options.ARCHES)
    if param.name == "set_":
        return "eq:" + ",".join(options.BY_KEY)
    if param.name == "unset":
        return "w:" + ",".join(options.BY_KEY)
    return ""


def _arg_kind(command: str, param) -> str:
    key = f"{command}.{param.name}"
    if key in ARG_KINDS:
        return ARG_KINDS[key]
    return "containers" if param.name in CONTAINER_ARGS else ""


def _one_line(text: str | None) -> str:
    text = " ".join((text or "").replace("\\[", "[").split())  # "\\[": rich markup escape
    return text[:1].upper() + text[1:] if text else ""


def tree() -> dict:
    """{"options": [...], "commands": [...]} read from typer's click command tree.

    An option is {"names", "help", "value" (a kind, or None for a flag), "multiple",
    "metavar"}; an argument is {"name", "help", "kind", "nargs", "required"}.
    """
    import typer._click as click
    import typer.main

    from .cli import app

    group = typer.main.get_command(app)
    ctx = click.Context(group, info_name="ruripy", **group.context_settings)

    def opt(p, sub) -> dict:
        return {
            # long names first (click keeps the help option's names in a set)
            "names": sorted(p.opts, key=lambda n: len(n) == 2) + list(p.secondary_opts),
            "help": _one_line(p.help),
            "value": None if p.is_flag else _option_kind(p),
            "multiple": bool(p.multiple),
            "metavar": p.metavar or p.name.rstrip("_").upper(),
        }

    commands = []
    for name in group.list_commands(ctx):
        cmd = group.commands[name]
        if cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx, **cmd.context_settings)
        opts, args = [], []
        for p in cmd.get_params(sub):
            if p.hidden:
                continue
            if p.param_type_name == "option":
                opts.append(opt(p, sub))
            else:
                args.append(
                    {
                        "name": p.name,
                        "help": _one_line(p.help),
                        "kind": _arg_kind(name, p),
                        "nargs": p.nargs,
                        "required": bool(p.required),
                    }
                )
        commands.append(
            {
                "name": name,
                "help": _one_line(cmd.get_short_help_str(200)),
                "description": (cmd.help or "").strip(),
                "options": opts,
                "args": args,
            }
        )
    glob = [opt(p, ctx) for p in group.get_params(ctx) if p.param_type_name == "option"]
    return {"options": glob, "commands": commands, "help": (group.help or "").strip()}


def _value_opts(cmd: dict) -> list[str]:
    return [n for o in cmd["options"] if o["value"] is not None for n in o["names"]]


def _arg_kinds(cmd: dict) -> list[str]:
    """Positional kinds in order ('-' for none); a repeating last argument ends in '...'."""
    out = []
    for a in cmd["args"]:
        kind = a["kind"] or "-"
        out.append(kind + ("..." if a["nargs"] == -1 and kind != "stop" else ""))
    return out


# -- bash ------------------------------------------------------------------------------------

_BASH_BODY = r"""
# _ruripy_fill KIND PREFIX [LEAD]: add the completions of KIND for PREFIX to COMPREPLY.
_ruripy_fill() {
    local cur=$2 lead=$3 src w prog=${COMP_WORDS[0]}
    local -a srcs items
    [[ $prog == */* && -x $prog ]] || prog=ruripy
    IFS=+ read -ra srcs <<<"$1"
    for src in "${srcs[@]}"; do
        items=()
        case $src in
            w:*) IFS=, read -ra items <<<"${src#w:}" ;;
            eq:*)
                IFS=, read -ra items <<<"${src#eq:}"
                items=("${items[@]/%/=}")
                compopt -o nospace 2>/dev/null
                ;;
            file)
                compopt -o filenames 2>/dev/null
                mapfile -t items < <(compgen -f -- "$cur")
                ;;
            *) mapfile -t items < <("$prog" __complete "$src" "$cur" 2>/dev/null) ;;
        esac
        for w in "${items[@]}"; do
            [[ -n $w && $w == "$cur"* ]] && COMPREPLY+=("$lead$w")
        done
    done
}

_ruripy() {
    COMPREPLY=()
    local line=${COMP_LINE:0:COMP_POINT} cur="" cmd="" w opt kind
    local -a words
    read -ra words <<<"$line"
    if [[ -n $line && $line != *[[:space:]] && ${#words[@]} -gt 0 ]]; then
        cur=${words[${#words[@]}-1]}
        unset 'words[${#words[@]}-1]'
    fi
    local i=1 n=0 dashdash=0 value_of="" stopped=0
    while ((i < ${#words[@]})); do
        [[ ${words[i]} == -* ]] || { cmd=${words[i]}; break; }
        ((i++))
    done
    local opts="" vopts="" args=""
    if [[ -z $cmd ]]; then
        if [[ $cur == -* ]]; then
            _ruripy_fill "w:$_ruripy_global" "$cur"
        else
            _ruripy_fill "w:$_ruripy_commands" "$cur"
        fi
    elif _ruripy_spec "$cmd"; then
        local -a kinds=($args)
        for ((i++; i < ${#words[@]}; i++)); do
            w=${words[i]}
            if ((dashdash)) || [[ $w != -?* ]]; then
                if [[ ${kinds[n]} == stop ]]; then stopped=1; break; fi
                ((n++))
            elif [[ $w == -- ]]; then
                dashdash=1
            elif [[ $w != *=* && ,$vopts, == *,$w,* ]]; then
                if ((i + 1 == ${#words[@]})); then value_of=$w; else ((i++)); fi
            fi
        done
        if ((stopped)); then
            :
        elif [[ -n $value_of ]]; then
            _ruripy_fill "$(_ruripy_value "$cmd" "$value_of")" "$cur"
        elif [[ $cur == -?*=* && $dashdash == 0 ]]; then
            opt=${cur%%=*}
            if [[ ,$vopts, == *,$opt,* ]]; then
                _ruripy_fill "$(_ruripy_value "$cmd" "$opt")" "${cur#*=}" "$opt="
            fi
        elif [[ $cur == -* && $dashdash == 0 ]]; then
            _ruripy_fill "w:$opts" "$cur"
        else
            if ((n >= ${#kinds[@]} && ${#kinds[@]} > 0)) && [[ ${kinds[-1]} == *... ]]; then
                n=$((${#kinds[@]} - 1))
            fi
            kind=${kinds[n]%...}
            [[ -n $kind && $kind != [-] && $kind != stop ]] && _ruripy_fill "$kind" "$cur"
        fi
    fi
    # Completions must start where bash's word starts: after the last ':' or '=' that is a
    # word break (image names hold colons, --opt=value an equals sign).
    local breaks=""
    [[ $COMP_WORDBREAKS == *:* ]] && breaks+=":"
    [[ $COMP_WORDBREAKS == *=* ]] && breaks+="="
    if [[ -n $breaks && $cur == *["$breaks"]* ]]; then
        local keep=${cur##*["$breaks"]}
        local drop=${cur%"$keep"}
        COMPREPLY=("${COMPREPLY[@]#"$drop"}")
    fi
    return 0
}

complete -F _ruripy ruripy
"""


def _bash_case(pairs: dict[str, list[str]], indent: str = "        ") -> str:
    lines = []
    for body, pats in pairs.items():
        lines.append(f"{indent}{'|'.join(pats)}) {body} ;;")
    return "\n".join(lines)


def bash(t: dict | None = None) -> str:
    t = t or tree()
    glob = [n for o in t["options"] for n in o["names"]]
    specs: dict[str, list[str]] = {}
    values: dict[str, list[str]] = {}
    for c in t["commands"]:
        opts = [n for o in c["options"] for n in o["names"]]
        body = f'opts="{",".join(opts)}" vopts="{",".join(_value_opts(c))}"'
        body += f' args="{" ".join(_arg_kinds(c))}"'
        specs.setdefault(body, []).append(c["name"])
        for o in c["options"]:
            if o["value"]:
                values.setdefault(f"echo '{o['value']}'", []).extend(
                    f'"{c["name"]} {n}"' for n in o["names"]
                )
    return (
        "# bash completion for ruripy. Generated from the CLI by "
        "'python -m ruripy.completion --write': do not edit.\n"
        "# Install: ruripy completion bash > ~/.local/share/bash-completion/completions/ruripy\n"
        f'_ruripy_commands="{",".join(c["name"] for c in t["commands"])}"\n'
        f'_ruripy_global="{",".join(glob)}"\n\n'
        "# _ruripy_spec CMD: its options, those taking a value, and its positional kinds.\n"
        "_ruripy_spec() {\n    case $1 in\n"
        f"{_bash_case(specs)}\n"
        "        *) return 1 ;;\n    esac\n}\n\n"
        "# _ruripy_value CMD OPTION: what the option's value is.\n"
        '_ruripy_value() {\n    case "$1 $2" in\n'
        f"{_bash_case(values)}\n"
        "    esac\n}\n" + _BASH_BODY
    )


# -- zsh -------------------------------------------------------------------------------------


def _zq(text: str) -> str:
    """Single-quote for zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _zdesc(text: str) -> str:
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]").replace(":", "\\:")


def _zaction(kind: str) -> str:
    if kind in ("", "stop"):
        return " "
    return "_ruripy_kind " + kind.replace(":", "\\:")


def _zsh_option(o: dict) -> list[str]:
    names = o["names"]
    excl = "" if o["multiple"] else "(" + " ".join(names) + ")"
    if any(n in ("-h", "--help", "--version") for n in names):
        excl = "(- *)"
    star = "*" if o["multiple"] else ""
    out = []
    for n in names:
        spec = f"{excl}{star}{n}"
        if o["value"] is not None:
            spec += "+" if len(n) == 2 else "="
        spec += f"[{_zdesc(o['help'])}]"
        if o["value"] is not None:
            spec += f":{_zdesc(o['metavar'])}:{_zaction(o['value'])}"
        out.append(_zq(spec))
    return out


def _zsh_args(c: dict) -> list[str]:
    out = []
    for i, a in enumerate(c["args"], 1):
        label = _zdesc(a["name"].upper())
        if a["kind"] == "stop":
            out.append(_zq(f"*::{label}: "))
        elif a["nargs"] == -1:
            out.append(_zq(f"*:{label}:{_zaction(a['kind'])}"))
        else:
            opt = "" if a["required"] else ":"
            out.append(_zq(f"{i}:{opt}{label}:{_zaction(a['kind'])}"))
    return out


_ZSH_HELPERS = r"""
# _ruripy_kind [COMPADD OPTIONS] KIND: complete one kind (sources joined by '+').
_ruripy_kind() {
    local src prog=${_ruripy_prog:-ruripy}
    local -a items expl
    expl=("${@[1,-2]}")
    for src in ${(s:+:)argv[-1]}; do
        case $src in
            w:*) items=(${(s:,:)${src#w:}}); compadd "${expl[@]}" -a items ;;
            eq:*) items=(${(s:,:)${src#eq:}}); compadd "${expl[@]}" -S '=' -a items ;;
            file) _files "${expl[@]}" ;;
            *) items=(${(f)"$(_call_program $src $prog __complete $src 2>/dev/null)"})
               compadd "${expl[@]}" -a items ;;
        esac
    done
}
"""


def zsh(t: dict | None = None) -> str:
    t = t or tree()
    lines = [
        "#compdef ruripy",
        "# zsh completion for ruripy. Generated from the CLI by "
        "'python -m ruripy.completion --write': do not edit.",
        "# Install: ruripy completion zsh > ~/.zfunc/_ruripy (with ~/.zfunc in $fpath, "
        "before compinit)",
        _ZSH_HELPERS,
    ]
    for c in t["commands"]:
        specs = [s for o in c["options"] for s in _zsh_option(o)] + _zsh_args(c)
        fn = "_ruripy_cmd_" + c["name"].replace("-", "_")
        lines.append(f"{fn}() {{\n    _arguments -s -S \\\n        " + " \\\n        ".join(specs))
        lines.append("}\n")
    cmds = [_zq(f"{c['name']}:{c['help']}") for c in t["commands"]]
    glob = [s for o in t["options"] for s in _zsh_option(o)]
    lines.append(
        "_ruripy() {\n"
        "    local curcontext=$curcontext state line _ruripy_prog=ruripy\n"
        "    [[ $words[1] == */* && -x $words[1] ]] && _ruripy_prog=$words[1]\n"
        "    typeset -A opt_args\n"
        "    _arguments -C \\\n        "
        + " \\\n        ".join(glob)
        + " \\\n        '1: :->command' \\\n        '*:: :->args'\n"
        "    case $state in\n"
        "        command)\n"
        "            local -a cmds\n"
        "            cmds=(\n                "
        + "\n                ".join(cmds)
        + "\n            )\n"
        "            _describe -t commands 'ruripy command' cmds\n"
        "            ;;\n"
        "        args)\n"
        "            curcontext=${curcontext%:*:*}:ruripy-$words[1]:\n"
        "            (( $+functions[_ruripy_cmd_${words[1]//-/_}] )) && "
        "_ruripy_cmd_${words[1]//-/_}\n"
        "            ;;\n"
        "    esac\n"
        "}\n\n"
        'if [[ $zsh_eval_context[-1] == loadautofunc ]]; then\n    _ruripy "$@"\n'
        "else\n    compdef _ruripy ruripy\nfi"
    )
    return "\n".join(lines) + "\n"


# -- fish ------------------------------------------------------------------------------------


def _fq(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


_FISH_HELPERS = r"""
# The command at the cursor (first word that is not an option), or nothing.
function __ruripy_cmd
    for w in (commandline -opc)[2..-1]
        string match -q -- '-*' $w; or begin; echo $w; return 0; end
    end
    return 1
end

function __ruripy_cmd_is
    test "$(__ruripy_cmd)" = "$argv[1]"
end

# __ruripy_at KIND: true when the positional argument at the cursor is of KIND.
function __ruripy_at
    set -l words (commandline -opc)
    set -l cur (commandline -ct)
    string match -q -- '-*' $cur; and return 1
    set -l cmd (__ruripy_cmd)
    test -n "$cmd"; or return 1
    set -l spec (__ruripy_spec $cmd)
    set -l vopts (string split , -- $spec[1])
    set -l kinds (string split ' ' -- $spec[2])
    set -l n 1
    set -l dashdash 0
    set -l skip 0
    set -l seen 0
    for w in $words[2..-1]
        if test $seen = 0
            string match -q -- '-*' $w; or set seen 1
            continue
        end
        if test $skip = 1
            set skip 0
        else if test $dashdash = 1; or not string match -q -- '-?*' $w
            test "$kinds[$n]" = stop; and return 1
            set n (math $n + 1)
        else if test "$w" = --
            set dashdash 1
        else if contains -- $w $vopts
            set skip 1
        end
    end
    test $skip = 1; and return 1
    if test $n -gt (count $kinds); and string match -q -- '*...' $kinds[-1]
        set n (count $kinds)
    end
    test $n -le (count $kinds); or return 1
    test (string replace -r '\.\.\.$' '' -- $kinds[$n]) = $argv[1]
end

function __ruripy_names
    set -l prog ruripy
    set -l first (commandline -opc)[1]
    string match -q -- '*/*' $first; and test -x $first; and set prog $first
    $prog __complete $argv[1] (commandline -ct) 2>/dev/null
end
"""


def _fish_kind(kind: str, files: bool = True) -> list[str]:
    """complete(1) flags for a kind (files left out when `files` is false)."""
    flags = []
    words = []
    for src in kind.split("+") if kind else []:
        if src.startswith("w:"):
            words.extend(src[2:].split(","))
        elif src.startswith("eq:"):
            words.extend(w + "=" for w in src[3:].split(","))
        elif src == "file":
            if files:
                flags.append("-F")
        else:
            words.append(f"(__ruripy_names {src})")
    if "-F" not in flags:
        flags.insert(0, "-f")
    if words:
        flags += ["-a", _fq(" ".join(words))]
    return flags


def fish(t: dict | None = None) -> str:
    t = t or tree()
    out = [
        "# fish completion for ruripy. Generated from the CLI by "
        "'python -m ruripy.completion --write': do not edit.",
        "# Install: ruripy completion fish > ~/.config/fish/completions/ruripy.fish",
        _FISH_HELPERS,
        "function __ruripy_spec",
        "    switch $argv[1]",
    ]
    for c in t["commands"]:
        out.append(f"        case {c['name']}")
        out.append(f"            echo {_fq(','.join(_value_opts(c)))}")
        out.append(f"            echo {_fq(' '.join(_arg_kinds(c)) or '-')}")
    out += ["    end", "end", "", "complete -c ruripy -f"]
    nocmd = "not __ruripy_cmd >/dev/null"
    for o in t["options"]:
        out.append(f"complete -c ruripy -n {_fq(nocmd)} {_fish_names(o)} -d {_fq(o['help'])}")
    for c in t["commands"]:
        out.append(f"complete -c ruripy -n {_fq(nocmd)} -a {c['name']} -d {_fq(c['help'])}")
    for c in t["commands"]:
        cond = _fq(f"__ruripy_cmd_is {c['name']}")
        for o in c["options"]:
            extra = ["-r", *_fish_kind(o["value"])] if o["value"] is not None else []
            extra = ["-x", *extra[2:]] if extra[1:2] == ["-f"] else extra
            line = f"complete -c ruripy -n {cond} {_fish_names(o)} -d {_fq(o['help'])}"
            out.append(" ".join([line, *extra]))
    kinds = sorted({a["kind"] for c in t["commands"] for a in c["args"]} - {"", "stop"})
    for k in kinds:
        srcs = k.split("+")
        if "file" in srcs and len(srcs) > 1:
            # names first; files only once the word looks like a path
            out.append(
                " ".join(["complete -c ruripy -n", _fq(f"__ruripy_at {k}"), *_fish_kind(k, False)])
            )
            cond = f"__ruripy_at {k}; and string match -qr -- '^[./~]|/' (commandline -ct)"
            out.append(f"complete -c ruripy -n {_fq(cond)} -F")
        else:
            out.append(" ".join(["complete -c ruripy -n", _fq(f"__ruripy_at {k}"), *_fish_kind(k)]))
    return "\n".join(out) + "\n"


def _fish_names(o: dict) -> str:
    parts = []
    for n in o["names"]:
        parts.append(f"-l {n[2:]}" if n.startswith("--") else f"-s {n[1:]}")
    return " ".join(parts)


# -- files -----------------------------------------------------------------------------------


def generate(shell: str, t: dict | None = None) -> str:
    if shell not in SHELLS:
        from .errors import RuripyError

        raise RuripyError(f"unknown shell {shell!r}; use one of {', '.join(SHELLS)}.")
    return {"bash": bash, "zsh": zsh, "fish": fish}[shell](t)


def repo_dir() -> str:
    return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "completions")


def main(argv: list[str] | None = None) -> int:
    """`python -m ruripy.completion [--write|--check] [SHELL]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    write = "--write" in argv
    check = "--check" in argv
    shells = [a for a in argv if not a.startswith("-")] or list(SHELLS)
    t = tree()
    stale = []
    for sh in shells:
        text = generate(sh, t)
        path = os.path.join(repo_dir(), FILES[sh])
        if write:
            os.makedirs(repo_dir(), exist_ok=True)
            with open(path, "w") as f:
                f.write(text)
            print(path)
        elif check:
            try:
                with open(path) as f:
                    if f.read() != text:
                        stale.append(path)
            except FileNotFoundError:
                stale.append(path)
        else:
            sys.stdout.write(text)
    for p in stale:
        print(f"{p} is stale: run 'python -m ruripy.completion --write'.", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
