"""The kernel side: namespaces, id maps, mounts, capabilities, seccomp, launch. Stdlib only."""
