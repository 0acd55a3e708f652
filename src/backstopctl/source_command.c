/*
 * source_command.c - "type = command" sources, and running a program under
 * a deadline for every reader that needs one (source_int.h)
 *
 * PROVIDES
 *   bs_source_command_read  /bin/sh -c src->command; its stdout is read as
 *                           a file source is (source_file.c). 0 when it
 *                           exited 0 within src->timeout_ms; -1 otherwise.
 *   bs__src_run             fork + exec with stdout on a pipe, read with
 *                           poll(2) against the deadline.
 *
 * HOW
 *   The child calls setpgid(0, 0) before exec, so the program and anything
 *   it starts are one process group; on timeout, or when the sink stops,
 *   the whole group gets SIGKILL (a shell pipeline dies with it) and the
 *   child is reaped. After end of file the child's exit is awaited until
 *   the same deadline.
 *
 * NEVER
 *   Leaves a child behind (it is always reaped), or reads stdin from ours
 *   (/dev/null). Runs a shell for anything but type = command.
 *
 * LIMITS
 *   The program's stderr goes to ours, unfiltered (it is the admin's
 *   program). A grandchild that leaves the process group (setsid) survives
 *   a timeout.
 */
#define _GNU_SOURCE /* pipe2 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "source_int.h"

#define BS_RUN_CHUNK 65536
#define BS_RUN_REAP_POLL_MS 10

/* start - fork and exec argv in its own process group; pid or -1 */
static pid_t start(const char *const argv[], int *out_fd, char *err, size_t errsz)
{
    int fds[2];
    pid_t pid;

    if (pipe2(fds, O_CLOEXEC) < 0) {
        snprintf(err, errsz, "pipe: %s", strerror(errno));
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        snprintf(err, errsz, "fork: %s", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        setpgid(0, 0);
        signal(SIGPIPE, SIG_DFL);
        if (null >= 0)
            dup2(null, STDIN_FILENO);
        dup2(fds[1], STDOUT_FILENO);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "backstopctl: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    setpgid(pid, pid); /* both sides: no window where a kill misses the group */
    close(fds[1]);
    *out_fd = fds[0];
    return pid;
}

/* reap - wait for pid until the deadline (then kill the group); its status or -1 */
static int reap(pid_t pid, uint64_t deadline, int *timed_out)
{
    int status;

    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return -1;
        if (bs__src_deadline(0) >= deadline) {
            *timed_out = 1;
            kill(-pid, SIGKILL);
            while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
            return status;
        }
        poll(NULL, 0, BS_RUN_REAP_POLL_MS);
    }
}

/* pump - stdout into the sink until EOF; 0, -1 stopped/error, -2 deadline */
static int pump(int fd, uint64_t deadline, bs__src_sink sink, void *arg, const char *what,
                char *err, size_t errsz)
{
    static char chunk[BS_RUN_CHUNK];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};

    for (;;) {
        uint64_t now = bs__src_deadline(0);
        int n;
        ssize_t got;

        if (now >= deadline)
            return -2;
        n = poll(&pfd, 1, (int)(deadline - now));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            snprintf(err, errsz, "%s: poll: %s", what, strerror(errno));
            return -1;
        }
        if (n == 0)
            continue; /* the deadline check above ends it */
        got = read(fd, chunk, sizeof chunk);
        if (got < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (got < 0) {
            snprintf(err, errsz, "%s: read error: %s", what, strerror(errno));
            return -1;
        }
        if (got == 0)
            return 0;
        if (sink(arg, chunk, (size_t)got) < 0)
            return -1;
    }
}

/* bs__src_run - see source_int.h */
int bs__src_run(const char *const argv[], const char *what, uint64_t deadline_ms, bs__src_sink sink,
                void *arg, char *err, size_t errsz)
{
    int fd = -1, status, timed_out = 0, rc;
    pid_t pid = start(argv, &fd, err, errsz);

    if (pid < 0)
        return -1;
    rc = pump(fd, deadline_ms, sink, arg, what, err, errsz);
    close(fd);
    if (rc < 0)
        kill(-pid, SIGKILL); /* timeout, or the sink stopped: nothing more is wanted */
    status = reap(pid, rc < 0 ? 0 : deadline_ms, &timed_out);
    if (rc == -2 || (rc == 0 && timed_out)) {
        snprintf(err, errsz, "%s: no result within the timeout: killed", what);
        return -1;
    }
    if (rc < 0)
        return -1;
    if (status < 0) {
        snprintf(err, errsz, "%s: waitpid: %s", what, strerror(errno));
        return -1;
    }
    if (WIFSIGNALED(status)) {
        snprintf(err, errsz, "%s: killed by signal %d", what, WTERMSIG(status));
        return -1;
    }
    if (WEXITSTATUS(status) != 0) {
        snprintf(err, errsz, "%s: exit status %d%s", what, WEXITSTATUS(status),
                 WEXITSTATUS(status) == 127 ? " (not found?)" : "");
        return -1;
    }
    return 0;
}

/* bs_source_command_read - the command's stdout through the line reader */
int bs_source_command_read(const bs_source *src, bs_source_emit emit, void *arg, char *err,
                           size_t errsz)
{
    const char *argv[] = {"/bin/sh", "-c", src->command, NULL};
    bs__src_lines l;

    bs__src_lines_init(&l, src, emit, arg, err, errsz);
    if (bs__src_run(argv, "command", bs__src_deadline(src->timeout_ms), bs__src_lines_feed, &l, err,
                    errsz) < 0)
        return -1;
    return bs__src_lines_end(&l);
}
