/*
 * logsink.c - bench_logsink: the cheapest syslog daemon there is
 *
 * PROVIDES
 *   bench_logsink PATH
 *   Binds an AF_UNIX SOCK_DGRAM socket at PATH (a stale socket there is
 *   replaced; any other file is refused), prints "bench_logsink: listening
 *   on PATH" on stdout once bound, then recv()s datagrams into one buffer
 *   and counts them: a datagram is one syslog line (that is how backstopd's
 *   client, and glibc's syslog(), send them). On SIGTERM or SIGINT it prints
 *   "lines=N bytes=M" on stdout, removes PATH and exits 0. Exit 2: usage or
 *   socket errors.
 *
 * WHY
 *   The benchmarks (scripts/bench, mirror_bench.py) must measure what a
 *   logged line costs when a daemon listens: the sender's send() and the
 *   daemon's recv() on the same CPUs. This daemon does nothing else with a
 *   line: rsyslog and journald parse it, add metadata, write it to a file
 *   or journal (and journald reads the sender's /proc), so they cost more
 *   per line than this: the figures with it are a floor.
 *
 * NEVER
 *   Parses, stores or writes a line. Allocates. Blocks anything but itself
 *   (recv is blocking: this is a separate process).
 *
 * LIMITS
 *   A datagram longer than BENCH_LOGSINK_BUF bytes is counted as one line
 *   with its bytes cut to the buffer (MSG_TRUNC is not asked for); the
 *   socket's receive buffer is the kernel's default, so a burst larger
 *   than it is refused to the sender (EAGAIN: backstopd drops and counts).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define BENCH_LOGSINK_BUF 8192 /* above backstopd's BS_LOG_LINE_MAX (2048) + header */
#define BENCH_LOGSINK_POLL_MS 200

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

/* bind_path - a bound datagram socket at path, or -1 with a message printed */
static int bind_path(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct timeval tv = {.tv_usec = BENCH_LOGSINK_POLL_MS * 1000};
    struct stat st;
    int fd;

    if (path[0] == '\0' || strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "bench_logsink: %s: empty or longer than %zu bytes\n", path,
                sizeof sa.sun_path - 1);
        return -1;
    }
    if (lstat(path, &st) == 0 && !S_ISSOCK(st.st_mode)) {
        fprintf(stderr, "bench_logsink: %s: exists and is not a socket\n", path);
        return -1;
    }
    unlink(path);
    memcpy(sa.sun_path, path, strlen(path) + 1);
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "bench_logsink: %s: %s\n", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

int main(int argc, char **argv)
{
    static char buf[BENCH_LOGSINK_BUF];
    unsigned long long lines = 0, bytes = 0;
    struct sigaction sa;
    int fd;

    if (argc != 2) {
        fprintf(stderr, "usage: bench_logsink PATH\n");
        return 2;
    }
    /* no SA_RESTART: the signal ends the blocking recv() with EINTR; a
     * signal that lands between the test of stop and recv() is seen at the
     * receive timeout (BENCH_LOGSINK_POLL_MS) */
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    fd = bind_path(argv[1]);
    if (fd < 0)
        return 2;
    printf("bench_logsink: listening on %s\n", argv[1]);
    fflush(stdout);
    while (!stop) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n >= 0) {
            lines++;
            bytes += (unsigned long long)n;
        } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
            fprintf(stderr, "bench_logsink: recv: %s\n", strerror(errno));
            close(fd);
            unlink(argv[1]);
            return 2;
        }
    }
    close(fd);
    unlink(argv[1]);
    printf("lines=%llu bytes=%llu\n", lines, bytes);
    return 0;
}
