/* seccomp_probe: make system calls and print what the kernel answered.
 *
 * Built by the tests with gcc at test time. Usage:
 *
 *   seccomp_probe [-n] CHECK...
 *
 * Each CHECK runs in a forked child (or, with -n, directly in this process, so that a
 * killing rule ends the probe itself) and prints one line "CHECK RESULT":
 *   ok      the call succeeded
 *   E<n>    it failed with errno n
 *   S<n>    the child was killed by signal n
 *   X<n>    the child exited with status n without printing
 *   unsupported   the check does not exist on this architecture
 *
 * Checks:
 *   sys:NR[:A0[:A1...]]   syscall(NR, A0..A5); numbers in C notation (0x.. allowed)
 *   i386:NR[:A0:A1:A2]    the 32-bit x86 ABI through int $0x80 (x86_64 only)
 *   x32:NR[:A0...]        the x32 ABI: NR | 0x40000000 (x86_64 only)
 *   socketcall:FAMILY:TYPE  32-bit socketcall(SYS_SOCKET, {FAMILY, TYPE, 0}) via int $0x80,
 *                         the way 32-bit glibc creates sockets (x86_64 only)
 *   clone:FLAGS           raw clone(FLAGS | SIGCHLD); the child exits at once
 *   ioctl:REQ             ioctl(fd of /dev/null, REQ, &c) with a 64-bit REQ
 *   mkdir:PATH            mkdir(PATH, 0700) through the mkdir system call where it exists
 *   status                prints "status Seccomp=N,NoNewPrivs=N" from /proc/self/status
 *   fork-exec             fork, execve this probe with "noop", wait: exit status 0
 *   spawn                 posix_spawn this probe with "noop" (glibc tries clone3 first)
 *   thread                pthread_create + join (glibc tries clone3 first)
 *   pipe                  pipe2, write, read
 *   unix                  socketpair(AF_UNIX), send, recv
 *   inet                  TCP over 127.0.0.1: socket, bind, listen, connect, accept, send, recv
 *   files:DIR             create, write, read back, rename and unlink a file in DIR
 *   getdents:DIR          list DIR with getdents64 (at least "." and "..")
 *   mmap                  anonymous mmap, mprotect, munmap
 *   noop                  exit 0 (used by fork-exec and spawn)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;
static char self[4096];

static void say(const char *check, const char *result)
{
	char line[8192];
	int n = snprintf(line, sizeof line, "%s %s\n", check, result);
	if (n > 0 && write(1, line, (size_t)n) < 0)
		_exit(120);
}

/* A result: 0 = ok, >0 = errno, -1 = unsupported. */
static int from_ret(long ret)
{
	return ret < 0 ? errno : 0;
}

static int parse_args(char *rest, unsigned long *a, int max)
{
	int n = 0;
	while (rest && *rest && n < max) {
		char *next = strchr(rest, ':');
		if (next)
			*next++ = '\0';
		a[n++] = strtoull(rest, NULL, 0);
		rest = next;
	}
	return n;
}

static long int80(unsigned long nr, unsigned long a, unsigned long b, unsigned long c)
{
#if defined(__x86_64__)
	long ret;
	__asm__ volatile("int $0x80"
			 : "=a"(ret)
			 : "a"(nr), "b"(a), "c"(b), "d"(c)
			 : "memory", "r8", "r9", "r10", "r11");
	return (int)ret;
#else
	(void)nr, (void)a, (void)b, (void)c;
	return -ENOSYS;
#endif
}

static int check_sys(char *rest)
{
	unsigned long a[7] = {0};
	parse_args(rest, a, 7);
	return from_ret(syscall(a[0], a[1], a[2], a[3], a[4], a[5], a[6]));
}

static int check_i386(char *rest)
{
#if defined(__x86_64__)
	unsigned long a[4] = {0};
	parse_args(rest, a, 4);
	long r = int80(a[0], a[1], a[2], a[3]);
	return (r < 0 && r > -4096) ? (int)-r : 0;
#else
	(void)rest;
	return -1;
#endif
}

static int check_socketcall(char *rest)
{
#if defined(__x86_64__)
	unsigned long a[2] = {0};
	parse_args(rest, a, 2);
	/* The argument block must be addressable by a 32-bit pointer. */
	unsigned int *args = mmap(NULL, 4096, PROT_READ | PROT_WRITE,
				  MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
	if (args == MAP_FAILED)
		return errno;
	args[0] = (unsigned int)a[0];
	args[1] = (unsigned int)a[1];
	args[2] = 0;
	long r = int80(102 /* socketcall */, 1 /* SYS_SOCKET */, (unsigned long)args, 0);
	return (r < 0 && r > -4096) ? (int)-r : 0;
#else
	(void)rest;
	return -1;
#endif
}

static int check_x32(char *rest)
{
#if defined(__x86_64__)
	unsigned long a[7] = {0};
	parse_args(rest, a, 7);
	return from_ret(syscall(a[0] | 0x40000000UL, a[1], a[2], a[3], a[4], a[5], a[6]));
#else
	(void)rest;
	return -1;
#endif
}

static int check_clone(char *rest)
{
	unsigned long flags = strtoull(rest, NULL, 0) | SIGCHLD;
	long pid = syscall(SYS_clone, flags, 0UL, 0UL, 0UL, 0UL);
	if (pid < 0)
		return errno;
	if (pid == 0)
		_exit(0);
	int st;
	waitpid((pid_t)pid, &st, 0);
	return 0;
}

static int check_ioctl(char *rest)
{
	unsigned long req = strtoull(rest, NULL, 0);
	char c = 'x';
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return errno;
	int r = from_ret(syscall(SYS_ioctl, (long)fd, req, &c));
	close(fd);
	return r;
}

static int check_mkdir(char *path)
{
#ifdef SYS_mkdir
	return from_ret(syscall(SYS_mkdir, path, 0700));
#else
	return from_ret(syscall(SYS_mkdirat, AT_FDCWD, path, 0700));
#endif
}

static void check_status(const char *check)
{
	char buf[16384], out[128] = "", *p;
	int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (n < 0) {
		say(check, "unreadable");
		return;
	}
	buf[n] = '\0';
	int seccomp = -1, nnp = -1;
	if ((p = strstr(buf, "\nSeccomp:")))
		seccomp = atoi(p + 9);
	if ((p = strstr(buf, "\nNoNewPrivs:")))
		nnp = atoi(p + 12);
	snprintf(out, sizeof out, "Seccomp=%d,NoNewPrivs=%d", seccomp, nnp);
	say(check, out);
}

static int wait_ok(pid_t pid)
{
	int st;
	if (waitpid(pid, &st, 0) < 0)
		return errno;
	return (WIFEXITED(st) && WEXITSTATUS(st) == 0) ? 0 : EIO;
}

static int check_fork_exec(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return errno;
	if (pid == 0) {
		char *argv[] = {self, "noop", NULL};
		execve(self, argv, environ);
		_exit(127);
	}
	return wait_ok(pid);
}

static int check_spawn(void)
{
	pid_t pid;
	char *argv[] = {self, "noop", NULL};
	int r = posix_spawn(&pid, self, NULL, NULL, argv, environ);
	if (r)
		return r;
	return wait_ok(pid);
}

static void *thread_main(void *arg)
{
	*(int *)arg = 42;
	return NULL;
}

static int check_thread(void)
{
	pthread_t t;
	int value = 0;
	int r = pthread_create(&t, NULL, thread_main, &value);
	if (r)
		return r;
	pthread_join(t, NULL);
	return value == 42 ? 0 : EIO;
}

static int check_pipe(void)
{
	int p[2];
	char c = 0;
	if (pipe2(p, O_CLOEXEC) < 0)
		return errno;
	if (write(p[1], "x", 1) != 1 || read(p[0], &c, 1) != 1)
		return errno ? errno : EIO;
	close(p[0]);
	close(p[1]);
	return c == 'x' ? 0 : EIO;
}

static int check_unix(void)
{
	int s[2];
	char c = 0;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, s) < 0)
		return errno;
	if (send(s[0], "y", 1, 0) != 1 || recv(s[1], &c, 1, 0) != 1)
		return errno ? errno : EIO;
	close(s[0]);
	close(s[1]);
	return c == 'y' ? 0 : EIO;
}

static int check_inet(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof a;
	char c = 0;
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (l < 0)
		return errno;
	if (bind(l, (struct sockaddr *)&a, sizeof a) < 0 || listen(l, 1) < 0 ||
	    getsockname(l, (struct sockaddr *)&a, &len) < 0)
		return errno;
	int c1 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c1 < 0 || connect(c1, (struct sockaddr *)&a, sizeof a) < 0)
		return errno;
	int c2 = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (c2 < 0)
		return errno;
	if (send(c1, "z", 1, 0) != 1 || recv(c2, &c, 1, 0) != 1)
		return errno ? errno : EIO;
	close(c1);
	close(c2);
	close(l);
	return c == 'z' ? 0 : EIO;
}

static int check_files(const char *dir)
{
	char a[4096], b[4096], buf[8] = "";
	snprintf(a, sizeof a, "%s/probe.%d", dir, (int)getpid());
	snprintf(b, sizeof b, "%s/probe.%d.renamed", dir, (int)getpid());
	int fd = open(a, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0)
		return errno;
	if (write(fd, "hello", 5) != 5 || close(fd) < 0)
		return errno;
	fd = open(a, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || read(fd, buf, 5) != 5)
		return errno;
	close(fd);
	if (strcmp(buf, "hello") != 0)
		return EIO;
	struct stat st;
	if (rename(a, b) < 0 || stat(b, &st) < 0 || unlink(b) < 0)
		return errno;
	return st.st_size == 5 ? 0 : EIO;
}

static int check_getdents(const char *dir)
{
	char buf[8192];
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
	int r = n < 0 ? errno : 0;
	close(fd);
	if (r)
		return r;
	return n >= 2 * 20 ? 0 : EIO; /* at least two entries */
}

static int check_mmap(void)
{
	char *p = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return errno;
	p[0] = 1;
	if (mprotect(p, 8192, PROT_READ) < 0 || munmap(p, 8192) < 0)
		return errno;
	return 0;
}

/* Runs one check and prints its line (except "status", which prints its own). */
static void run(char *check)
{
	char copy[4096];
	snprintf(copy, sizeof copy, "%s", check);
	char *rest = strchr(copy, ':');
	if (rest)
		*rest++ = '\0';
	int r;
	errno = 0;
	if (!strcmp(copy, "sys"))
		r = check_sys(rest);
	else if (!strcmp(copy, "i386"))
		r = check_i386(rest);
	else if (!strcmp(copy, "socketcall"))
		r = check_socketcall(rest ? rest : "1:1");
	else if (!strcmp(copy, "x32"))
		r = check_x32(rest);
	else if (!strcmp(copy, "clone"))
		r = check_clone(rest ? rest : "0");
	else if (!strcmp(copy, "ioctl"))
		r = check_ioctl(rest ? rest : "0");
	else if (!strcmp(copy, "mkdir"))
		r = check_mkdir(rest ? rest : "");
	else if (!strcmp(copy, "status")) {
		check_status(check);
		return;
	} else if (!strcmp(copy, "fork-exec"))
		r = check_fork_exec();
	else if (!strcmp(copy, "spawn"))
		r = check_spawn();
	else if (!strcmp(copy, "thread"))
		r = check_thread();
	else if (!strcmp(copy, "pipe"))
		r = check_pipe();
	else if (!strcmp(copy, "unix"))
		r = check_unix();
	else if (!strcmp(copy, "inet"))
		r = check_inet();
	else if (!strcmp(copy, "files"))
		r = check_files(rest ? rest : ".");
	else if (!strcmp(copy, "getdents"))
		r = check_getdents(rest ? rest : ".");
	else if (!strcmp(copy, "mmap"))
		r = check_mmap();
	else {
		say(check, "unknown-check");
		return;
	}
	char out[32];
	if (r < 0)
		snprintf(out, sizeof out, "unsupported");
	else if (r == 0)
		snprintf(out, sizeof out, "ok");
	else
		snprintf(out, sizeof out, "E%d", r);
	say(check, out);
}

int main(int argc, char **argv)
{
	int in_process = 0, i = 1;
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	if (n > 0)
		self[n] = '\0';
	else
		snprintf(self, sizeof self, "%s", argv[0]);
	if (argc > 1 && !strcmp(argv[1], "noop"))
		return 0;
	if (argc > 1 && !strcmp(argv[1], "-n")) {
		in_process = 1;
		i = 2;
	}
	for (; i < argc; i++) {
		if (in_process) {
			run(argv[i]);
			continue;
		}
		pid_t pid = fork();
		if (pid < 0) {
			char out[32];
			snprintf(out, sizeof out, "fork-E%d", errno);
			say(argv[i], out);
			continue;
		}
		if (pid == 0) {
			run(argv[i]);
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
		char out[32];
		if (WIFSIGNALED(st)) {
			snprintf(out, sizeof out, "S%d", WTERMSIG(st));
			say(argv[i], out);
		} else if (WEXITSTATUS(st) != 0) {
			snprintf(out, sizeof out, "X%d", WEXITSTATUS(st));
			say(argv[i], out);
		}
	}
	return 0;
}
