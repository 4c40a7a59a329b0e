"""Finding the user a container's command runs as, from its /etc/passwd and /etc/group."""

import pytest

from ruripy.errors import RuripyError
from ruripy.sandbox.process import lookup, parse_db

PASSWD = parse_db(
    b"root:x:0:0:root:/root:/bin/sh\n"
    b"user:x:1000:1000::/home/user:/bin/sh\n"
    b"broken:x:notanumber:1::/:/bin/sh\n"
)
GROUP = parse_db(b"root:x:0:\nwheel:x:10:root,user\nuser:x:1000:\nusers:x:100:user\n")


@pytest.mark.parametrize(
    "spec, passwd, want",
    [
        (None, PASSWD, (0, 0, [0, 10], "/root", "root")),
        (None, [], (0, 0, [0], "/root", "0")),  # a rootfs without /etc/passwd: plain 0
        ("user", PASSWD, (1000, 1000, [1000, 10, 100], "/home/user", "user")),
        ("1000", PASSWD, (1000, 1000, [1000, 10, 100], "/home/user", "user")),
        ("user:100", PASSWD, (1000, 100, [100, 10], "/home/user", "user")),
        ("4242:4242", PASSWD, (4242, 4242, [4242], "/", "4242")),
    ],
)
def test_lookup(spec, passwd, want):
    assert lookup(spec, passwd, GROUP) == want


@pytest.mark.parametrize(
    "spec, message",
    [
        ("root", "no user 'root' in the container's /etc/passwd."),  # named: must exist
        ("nobody", "no user 'nobody' in the container's /etc/passwd."),
        ("broken", "no user 'broken' in the container's /etc/passwd."),
        ("user:nogroup", "no group 'nogroup' in the container's /etc/group."),
    ],
)
def test_lookup_refuses_unknown_names(spec, message):
    passwd = [] if spec == "root" else PASSWD
    with pytest.raises(RuripyError) as e:
        lookup(spec, passwd, GROUP)
    assert str(e.value) == message
