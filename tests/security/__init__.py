"""Security tests, named after the ids in security.md section 8 (a package, so that their
file names may repeat the unit tests' names, e.g. test_seccomp.py)."""
