/* sec_probe: adversarial checks run inside a container; prints what the kernel answered.
 *
 * Built statically by the security tests with gcc at test time (tests/security/conftest.py)
 * and copied into the container's rootfs. Usage:
 *
 *   sec_probe CHECK...
 *
 * Each CHECK prints one line "CHECK RESULT". RESULT is "ok", an errno name such as EPERM,
 * or check-specific "key=value" items joined by ",". Arguments are separated by ':'.
 *
 *   open:PATH:MODE        open PATH; MODE is r, w, rw or path (O_PATH); nothing is written
 *   read:PATH             read PATH to the end: bytes=N
 *   ls:PATH               entries=N (without . and ..)
 *   mkdir:PATH            mkdir(PATH, 0700)
 *   mknod:PATH:b|c:MAJ:MIN  mknod(PATH, 0600 | type, makedev(MAJ, MIN))
 *   umount:PATH           umount2(PATH, 0)
 *   remount-rw:PATH       mount(NULL, PATH, NULL, MS_REMOUNT | MS_BIND, NULL): clear ro
 *   mount-tmpfs:PATH      mount("t", PATH, "tmpfs", 0, NULL)
 *   kill:PID:SIG          kill(PID, SIG)
 *   setgroups             setgroups(0, NULL)
 *   ids                   r=UID,e=EUID
 *   fstype:PATH           statfs: type=HEX
 *   chroot-escape:PATH    the classic double chroot (mkdir, chroot without chdir, chdir ..
 *                         many times, chroot .), then stat PATH: ok means PATH is visible
 *   fresh-proc            unshare(user+mount+pid), fork, mount a new procfs, open its
 *                         sysrq-trigger and sys/kernel/core_pattern for writing; the result
 *                         names the first step that failed (step=ERRNO) or "mounted,..."
 *   exewatch:SECONDS[:FILE]  find another process whose /proc/PID/exe is a memfd or a
 *                         python interpreter, hold an O_PATH fd on it (then create FILE,
 *                         if given, to tell it so), wait until the process exits or
 *                         executes another program (alive=0), then reopen it for writing;
 *                         writes one byte only to a memfd
 *   procopen:PID          open /proc/PID/exe, /proc/PID/mem, /proc/PID/fd/0 for reading
 *   tiocsti:TEXT          push TEXT into the input queue of the terminal on fd 0
 *   sleep:SECONDS         sleep
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void say(const char *check, const char *result)
{
	char line[8192];
	int n = snprintf(line, sizeof line, "%s %s\n", check, result);
	if (n > 0 && write(1, line, (size_t)n) < 0)
		_exit(120);
}

static const char *ename(int e)
{
	const char *n = strerrorname_np(e);
	static char buf[32];
	if (n)
		return n;
	snprintf(buf, sizeof buf, "E%d", e);
	return buf;
}

static const char *res(int ret)
{
	return ret < 0 ? ename(errno) : "ok";
}

/* Split "a:b:c" in place into at most max fields. */
static int split(char *s, char **f, int max)
{
	int n = 0;
	while (s && n < max) {
		f[n++] = s;
		s = strchr(s, ':');
		if (s)
			*s++ = '\0';
	}
	return n;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

static void do_open(const char *check, const char *path, const char *mode)
{
	int flags = O_RDONLY;
	if (!strcmp(mode, "w"))
		flags = O_WRONLY;
	else if (!strcmp(mode, "rw"))
		flags = O_RDWR;
	else if (!strcmp(mode, "path"))
		flags = O_PATH;
	int fd = open(path, flags | O_CLOEXEC | O_NOCTTY);
	say(check, res(fd));
	if (fd >= 0)
		close(fd);
}

static void do_read(const char *check, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		say(check, ename(errno));
		return;
	}
	char buf[65536], out[64];
	long total = 0;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof buf);
		if (n < 0) {
			say(check, ename(errno));
			close(fd);
			return;
		}
		if (n == 0)
			break;
		total += n;
	}
	close(fd);
	snprintf(out, sizeof out, "bytes=%ld", total);
	say(check, out);
}

static void do_ls(const char *check, const char *path)
{
	DIR *d = opendir(path);
	if (!d) {
		say(check, ename(errno));
		return;
	}
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)))
		if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
			n++;
	closedir(d);
	char out[64];
	snprintf(out, sizeof out, "entries=%d", n);
	say(check, out);
}

static void do_chroot_escape(const char *check, const char *path)
{
	char out[256];
	if (mkdir("escape-dir", 0700) < 0 && errno != EEXIST) {
		snprintf(out, sizeof out, "mkdir=%s", ename(errno));
		say(check, out);
		return;
	}
	if (chroot("escape-dir") < 0) {
		snprintf(out, sizeof out, "chroot=%s", ename(errno));
		say(check, out);
		return;
	}
	for (int i = 0; i < 256; i++)
		if (chdir("..") < 0)
			break;
	if (chroot(".") < 0) {
		snprintf(out, sizeof out, "chroot2=%s", ename(errno));
		say(check, out);
		return;
	}
	struct stat st;
	say(check, res(stat(path, &st)));
}

static void do_fresh_proc(const char *check)
{
	char out[256];
	uid_t uid = getuid();
	gid_t gid = getgid();
	if (unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID) < 0) {
		snprintf(out, sizeof out, "unshare=%s", ename(errno));
		say(check, out);
		return;
	}
	char map[64];
	int fd = open("/proc/self/uid_map", O_WRONLY);
	if (fd >= 0) {
		int n = snprintf(map, sizeof map, "0 %u 1\n", uid);
		if (write(fd, map, (size_t)n) < 0) {
		}
		close(fd);
	}
	fd = open("/proc/self/setgroups", O_WRONLY);
	if (fd >= 0) {
		if (write(fd, "deny\n", 5) < 0) {
		}
		close(fd);
	}
	fd = open("/proc/self/gid_map", O_WRONLY);
	if (fd >= 0) {
		int n = snprintf(map, sizeof map, "0 %u 1\n", gid);
		if (write(fd, map, (size_t)n) < 0) {
		}
		close(fd);
	}
	int p[2];
	if (pipe(p) < 0) {
		say(check, "pipe-failed");
		return;
	}
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(out, sizeof out, "fork=%s", ename(errno));
		say(check, out);
		return;
	}
	if (pid == 0) {
		close(p[0]);
		char r[256];
		const char *dir = "/tmp/.sec-probe-proc";
		mkdir(dir, 0700);
		if (mount("proc", dir, "proc", 0, NULL) < 0) {
			snprintf(r, sizeof r, "mount=%s", ename(errno));
		} else {
			int a = open("/tmp/.sec-probe-proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
			int ea = errno;
			int b = open("/tmp/.sec-probe-proc/sys/kernel/core_pattern", O_WRONLY | O_CLOEXEC);
			int eb = errno;
			snprintf(r, sizeof r, "mounted,sysrq=%s,core_pattern=%s",
				 a < 0 ? ename(ea) : "ok", b < 0 ? ename(eb) : "ok");
			umount2(dir, MNT_DETACH);
		}
		rmdir(dir);
		if (write(p[1], r, strlen(r)) < 0)
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	char r[256] = {0};
	ssize_t n = read(p[0], r, sizeof r - 1);
	if (n < 0)
		n = 0;
	r[n] = 0;
	waitpid(pid, NULL, 0);
	say(check, n ? r : "child-silent");
}

static int interesting_exe(const char *link)
{
	return !strncmp(link, "/memfd:", 7) || strstr(link, "python") != NULL;
}

static void do_exewatch(const char *check, int seconds, const char *signal_file)
{
	char out[8192], link[4096], path[64];
	pid_t me = getpid();
	int fd = -1;
	pid_t target = 0;
	for (int tries = 0; tries < seconds * 1000 && fd < 0; tries++) {
		DIR *d = opendir("/proc");
		struct dirent *e;
		while (d && (e = readdir(d))) {
			pid_t pid = (pid_t)atoi(e->d_name);
			if (pid <= 1 || pid == me)
				continue;
			snprintf(path, sizeof path, "/proc/%d/exe", pid);
			ssize_t n = readlink(path, link, sizeof link - 1);
			if (n <= 0)
				continue;
			link[n] = 0;
			if (!interesting_exe(link))
				continue;
			fd = open(path, O_PATH | O_CLOEXEC);
			if (fd >= 0) {
				target = pid;
				break;
			}
		}
		if (d)
			closedir(d);
		if (fd < 0)
			sleep_ms(1);
	}
	if (fd < 0) {
		say(check, "none-found");
		return;
	}
	if (signal_file) { /* tell the target it has been seen */
		int sf = open(signal_file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
		if (sf >= 0)
			close(sf);
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	ssize_t n = readlink(path, link, sizeof link - 1);
	link[n > 0 ? n : 0] = 0;
	for (char *c = link; *c; c++)
		if (*c == ' ' || *c == ',')
			*c = '_';
	/* Wait until the target no longer runs that executable (it exited or exec'd another
	 * program), then reopen the executable for writing. */
	char first[4096], now[4096];
	snprintf(path, sizeof path, "/proc/%d/exe", target);
	ssize_t fl = readlink(path, first, sizeof first - 1);
	first[fl > 0 ? fl : 0] = 0;
	int alive = 1;
	for (int i = 0; i < seconds * 100 && alive; i++) {
		ssize_t m = readlink(path, now, sizeof now - 1);
		now[m > 0 ? m : 0] = 0;
		if ((kill(target, 0) < 0 && errno == ESRCH) || strcmp(now, first))
			alive = 0;
		else
			sleep_ms(10);
	}
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	int w = open(path, O_WRONLY | O_CLOEXEC);
	int ew = errno;
	const char *wres = "not-tried";
	if (w >= 0 && !strncmp(link, "/memfd:", 7)) {
		/* Only a memfd copy is ever written to: it is private to ruripy's process. */
		wres = write(w, "x", 1) < 0 ? ename(errno) : "ok";
	}
	snprintf(out, sizeof out, "exe=%s,alive=%d,reopen=%s,write=%s", link, alive,
		 w < 0 ? ename(ew) : "ok", wres);
	if (w >= 0)
		close(w);
	close(fd);
	say(check, out);
}

static void do_procopen(const char *check, const char *pid)
{
	char out[512], path[64];
	const char *names[] = {"exe", "mem", "fd/0"};
	int pos = 0;
	for (int i = 0; i < 3; i++) {
		snprintf(path, sizeof path, "/proc/%s/%s", pid, names[i]);
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
		int e = errno;
		pos += snprintf(out + pos, sizeof out - (size_t)pos, "%s%s=%s", i ? "," : "",
				names[i], fd < 0 ? ename(e) : "ok");
		if (fd >= 0)
			close(fd);
	}
	say(check, out);
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char *copy = strdup(argv[i]);
		char *f[6] = {0};
		int n = split(copy, f, 6);
		const char *cmd = f[0];
		char out[128];
		if (!strcmp(cmd, "open") && n == 3) {
			do_open(argv[i], f[1], f[2]);
		} else if (!strcmp(cmd, "read") && n == 2) {
			do_read(argv[i], f[1]);
		} else if (!strcmp(cmd, "ls") && n == 2) {
			do_ls(argv[i], f[1]);
		} else if (!strcmp(cmd, "mkdir") && n == 2) {
			say(argv[i], res(mkdir(f[1], 0700)));
		} else if (!strcmp(cmd, "mknod") && n == 5) {
			mode_t t = f[2][0] == 'b' ? S_IFBLK : S_IFCHR;
			say(argv[i], res(mknod(f[1], 0600 | t, makedev(atoi(f[3]), atoi(f[4])))));
		} else if (!strcmp(cmd, "umount") && n == 2) {
			say(argv[i], res(umount2(f[1], 0)));
		} else if (!strcmp(cmd, "remount-rw") && n == 2) {
			say(argv[i], res(mount(NULL, f[1], NULL, MS_REMOUNT | MS_BIND, NULL)));
		} else if (!strcmp(cmd, "mount-tmpfs") && n == 2) {
			say(argv[i], res(mount("t", f[1], "tmpfs", 0, NULL)));
		} else if (!strcmp(cmd, "kill") && n == 3) {
			say(argv[i], res(kill((pid_t)atoi(f[1]), atoi(f[2]))));
		} else if (!strcmp(cmd, "setgroups")) {
			say(argv[i], res(setgroups(0, NULL)));
		} else if (!strcmp(cmd, "ids")) {
			snprintf(out, sizeof out, "r=%u,e=%u", getuid(), geteuid());
			say(argv[i], out);
		} else if (!strcmp(cmd, "fstype") && n == 2) {
			struct statfs s;
			if (statfs(f[1], &s) < 0) {
				say(argv[i], ename(errno));
			} else {
				snprintf(out, sizeof out, "type=0x%lx", (unsigned long)s.f_type);
				say(argv[i], out);
			}
		} else if (!strcmp(cmd, "chroot-escape") && n == 2) {
			do_chroot_escape(argv[i], f[1]);
		} else if (!strcmp(cmd, "fresh-proc")) {
			do_fresh_proc(argv[i]);
		} else if (!strcmp(cmd, "exewatch") && (n == 2 || n == 3)) {
			do_exewatch(argv[i], atoi(f[1]), n == 3 ? f[2] : NULL);
		} else if (!strcmp(cmd, "procopen") && n == 2) {
			do_procopen(argv[i], f[1]);
		} else if (!strcmp(cmd, "tiocsti") && n == 2) {
			int r = 0;
			for (char *c = f[1]; *c && r == 0; c++)
				r = ioctl(0, TIOCSTI, c);
			say(argv[i], res(r));
		} else if (!strcmp(cmd, "sleep") && n == 2) {
			sleep((unsigned)atoi(f[1]));
			say(argv[i], "ok");
		} else {
			say(argv[i], "bad-check");
		}
		free(copy);
	}
	return 0;
}
