"""Users and groups of a container, from the text of its /etc/passwd and /etc/group.

The callers read those files (inside the container, or in-root from the host) and hand
over the lines; nothing here opens a file. Standard library only.
"""

from ..errors import RuripyError


def parse_db(data: bytes) -> list[list[str]]:
    return [line.split(":") for line in data.decode("utf-8", "replace").splitlines()]


def lookup(
    spec: str | None, passwd: list[list[str]], group: list[list[str]]
) -> tuple[int, int, list[int], str, str]:
    """(uid, gid, groups, home, name) for USER[:GROUP], names or numbers. Without one, uid
    0: root, as /etc/passwd names it, or plain 0 in a rootfs without one (as podman)."""
    user, _, grp = (spec or "0").partition(":")
    uid = gid = None
    home, name, known = "/", user, False
    for e in passwd:
        if len(e) >= 6 and (e[0] == user or (user.isdigit() and e[2] == user)):
            try:
                uid, gid = int(e[2]), int(e[3])
            except ValueError:
                continue
            name, home, known = e[0], e[5] or "/", True
            break
    if uid is None:
        if not user.isdigit():
            raise RuripyError(f"no user {user!r} in the container's /etc/passwd.")
        uid = gid = int(user)
        home = "/root" if uid == 0 else "/"
    if grp:
        gid = None
        for e in group:
            if len(e) >= 3 and (e[0] == grp or (grp.isdigit() and e[2] == grp)):
                try:
                    gid = int(e[2])
                except ValueError:
                    continue
                break
        if gid is None:
            if not grp.isdigit():
                raise RuripyError(f"no group {grp!r} in the container's /etc/group.")
            gid = int(grp)
    groups = [gid]
    if known:
        for e in group:
            if len(e) >= 4 and name in e[3].split(","):
                try:
                    g = int(e[2])
                except ValueError:
                    continue
                if g not in groups:
                    groups.append(g)
    return uid, gid, groups, home, name
