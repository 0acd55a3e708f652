/*
 * replay.c - run a fuzz target over files without libFuzzer
 *
 * Linked with one tests/fuzz/fuzz_T.c instead of libFuzzer's main, so the
 * committed corpora (and crash inputs) run as ordinary tests under any
 * compiler and the normal sanitizer build:
 *   fuzz_replay_T PATH...
 * A PATH is a file or a directory (every file under it, by name, skipping
 * dot files). Arguments that start with '-' (libFuzzer flags) are ignored,
 * so a libFuzzer command line replays as it is.
 *
 * LLVMFuzzerInitialize is called once, if the target defines one. Each
 * input then runs in a child process, in an exact-size heap copy (as
 * libFuzzer gives it, so ASan catches reads past the end); the child exits
 * through exit(), so LeakSanitizer checks that input alone. A crash or a
 * non-zero exit marks that input failed, names it, and the others still
 * run. With BS_FUZZ_INPROCESS=1 in the environment the inputs run in this
 * process, in order, and the first failure ends it (for a debugger).
 *
 * Prints "replayed N inputs" and "P passed, F failed". Exits 0 when every
 * input passed, 1 when one failed or there was nothing to replay, 2 when a
 * path cannot be read.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* weak: a target without it leaves the address NULL */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static unsigned n_passed, n_failed;
static int in_process;
static uint8_t empty_input; /* where an empty input points if malloc(0) is NULL */

static void release(uint8_t *data)
{
    if (data != &empty_input)
        free(data);
}

/* read_file - the whole file in an exact-size malloc block; -1 on error */
static int read_file(const char *path, uint8_t **data, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    long n;

    *data = NULL;
    if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 ||
        fseek(fp, 0, SEEK_SET) != 0) {
        if (fp != NULL)
            fclose(fp);
        return -1;
    }
    *size = (size_t)n;
    *data = malloc(*size);
    if (*data == NULL && *size == 0)
        *data = &empty_input;
    if (*data == NULL || fread(*data, 1, *size, fp) != *size) {
        fclose(fp);
        release(*data);
        *data = NULL;
        return -1;
    }
    fclose(fp);
    return 0;
}

/* run_one - one input, in a child unless in_process; counts the outcome */
static int run_one(const char *path)
{
    uint8_t *data;
    size_t size;
    pid_t pid;
    int status;

    if (read_file(path, &data, &size) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (in_process) {
        LLVMFuzzerTestOneInput(data, size);
        n_passed++;
        release(data);
        return 0;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        fprintf(stderr, "replay: fork: %s\n", strerror(errno));
        exit(2);
    }
    if (pid == 0) {
        LLVMFuzzerTestOneInput(data, size);
        release(data);
        exit(0); /* through exit(): LeakSanitizer runs here */
    }
    release(data);
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) {
            fprintf(stderr, "replay: waitpid: %s\n", strerror(errno));
            exit(2);
        }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
        n_passed++;
        return 0;
    }
    n_failed++;
    if (WIFSIGNALED(status))
        fprintf(stderr, "FAILED: %s (signal %d)\n", path, WTERMSIG(status));
    else
        fprintf(stderr, "FAILED: %s (exit %d)\n", path, WEXITSTATUS(status));
    return 0;
}

static int skip_dirent(const struct dirent *e)
{
    return e->d_name[0] != '.';
}

/* run_path - a file, or every file under a directory, in name order */
static int run_path(const char *path)
{
    struct dirent **list;
    struct stat st;
    int n, i, rc = 0;

    if (stat(path, &st) != 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode))
        return run_one(path);
    n = scandir(path, &list, skip_dirent, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (i = 0; i < n; i++) {
        size_t len = strlen(path) + strlen(list[i]->d_name) + 2;
        char *sub = malloc(len);

        if (sub == NULL) {
            fprintf(stderr, "replay: out of memory\n");
            exit(2);
        }
        snprintf(sub, len, "%s/%s", path, list[i]->d_name);
        if (rc == 0 && run_path(sub) != 0)
            rc = -1;
        free(sub);
        free(list[i]);
    }
    free(list);
    return rc;
}

int main(int argc, char **argv)
{
    const char *env = getenv("BS_FUZZ_INPROCESS");
    int i, unreadable = 0;

    in_process = env != NULL && strcmp(env, "1") == 0;
    if (LLVMFuzzerInitialize != NULL)
        LLVMFuzzerInitialize(&argc, &argv);
    for (i = 1; i < argc; i++)
        if (argv[i][0] != '-' && run_path(argv[i]) != 0)
            unreadable = 1;
    printf("replayed %u inputs\n", n_passed + n_failed);
    printf("%u passed, %u failed\n", n_passed, n_failed);
    if (unreadable)
        return 2;
    return n_failed > 0 || n_passed == 0 ? 1 : 0;
}
