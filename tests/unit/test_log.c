/*
 * test_log.c - unit tests for the log lines (src/common/log.c)
 *
 * Before bs_log_open, lines go to stderr only: stderr is pointed at a
 * temporary file and each line read back after its "backstopd[pid]: ".
 * Covers bs_log and bs_log_text alike: the level check (nothing written
 * for a disabled level), the prefixes, control characters (and a NUL in
 * bs_log_text's text) as '?' on both sides of the 16-byte blocks the
 * cleaning tests at once, and the cut at BS_LOG_LINE_MAX ("..." at the end).
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "backstop/log.h"
#include "check.h"

#define LINE_MAX_TEXT 2047 /* BS_LOG_LINE_MAX - 1 */

static FILE *cap;
static int saved_stderr;

/* captured - the text of what was written since the last call (the part
 * after "]: ", without the newline), "" when nothing was */
static const char *captured(void)
{
    static char all[8192];
    static off_t done; /* bytes of the file already read */
    const char *text;
    ssize_t r = pread(fileno(cap), all, sizeof(all) - 1, done);
    size_t n = r > 0 ? (size_t)r : 0;

    done += (off_t)n;
    all[n] = '\0';
    if (n == 0)
        return "";
    if (n > 0 && all[n - 1] == '\n')
        all[n - 1] = '\0';
    text = strstr(all, "]: ");
    return text ? text + 3 : "(no ident)";
}

static void test_levels(void)
{
    bs_log_level = BS_LOG_INFO;
    bs_log(BS_LOG_DEBUG, "not %s", "this");
    bs_log_text(BS_LOG_DEBUG, "nor this", 8);
    CHECK_EQ_STR(captured(), "");
    CHECK(!bs_log_enabled(BS_LOG_DEBUG));
    CHECK(bs_log_enabled(BS_LOG_INFO));
    bs_log_text(BS_LOG_INFO, "plain text, not a %s format", 27);
    CHECK_EQ_STR(captured(), "plain text, not a %s format");
    bs_log_text(BS_LOG_WARN, "careful", 7);
    CHECK_EQ_STR(captured(), "warning: careful");
    bs_log(BS_LOG_ERROR, "%d errors", 2);
    CHECK_EQ_STR(captured(), "error: 2 errors");
    bs_log_text(BS_LOG_INFO, "only the first 4", 4);
    CHECK_EQ_STR(captured(), "only");
    bs_log_level = BS_LOG_ERROR;
    bs_log_text(BS_LOG_WARN, "careful", 7);
    CHECK_EQ_STR(captured(), "");
    bs_log_level = BS_LOG_INFO;
}

/* test_clean - a control byte at every offset of a 40-byte line, both ways */
static void test_clean(void)
{
    static const char bad[] = {'\n', '\r', '\t', '\x1b', '\x7f', '\x01', '\x1f'};
    char text[41], want[41];
    size_t k, b;

    for (k = 0; k < 40; k++) {
        for (b = 0; b < sizeof(bad); b++) {
            memset(text, 'a', 40);
            text[39] = '\xe9'; /* 8-bit bytes are kept */
            text[40] = '\0';
            memcpy(want, text, sizeof(want));
            text[k] = bad[b];
            want[k] = '?';
            bs_log_text(BS_LOG_INFO, text, 40);
            CHECK_EQ_STR(captured(), want);
            bs_log(BS_LOG_INFO, "%s", text);
            CHECK_EQ_STR(captured(), want);
        }
        text[k] = '\0'; /* a NUL in the text: a '?' too, the rest still printed */
        bs_log_text(BS_LOG_INFO, text, 40);
        CHECK_EQ_STR(captured(), want);
    }
    /* the chars that are fine */
    bs_log_text(BS_LOG_INFO, " ~<>[]=;", 8);
    CHECK_EQ_STR(captured(), " ~<>[]=;");
}

/* test_cut - a line longer than the buffer ends in "..." */
static void test_cut(void)
{
    static char text[3000], want[LINE_MAX_TEXT + 1];
    const char *got;

    memset(text, 'x', sizeof(text));
    bs_log_text(BS_LOG_INFO, text, LINE_MAX_TEXT + 1); /* one over: cut */
    got = captured();
    CHECK_EQ_INT(strlen(got), LINE_MAX_TEXT);
    CHECK(strcmp(got + LINE_MAX_TEXT - 3, "...") == 0);
    bs_log_text(BS_LOG_INFO, text, LINE_MAX_TEXT); /* exactly fits */
    got = captured();
    CHECK_EQ_INT(strlen(got), LINE_MAX_TEXT);
    CHECK(got[LINE_MAX_TEXT - 1] == 'x');
    bs_log_text(BS_LOG_WARN, text, sizeof(text));
    got = captured();
    memcpy(want, "warning: ", 9);
    memset(want + 9, 'x', LINE_MAX_TEXT - 9 - 3);
    memcpy(want + LINE_MAX_TEXT - 3, "...", 4);
    CHECK_EQ_STR(got, want);
    bs_log(BS_LOG_WARN, "%.*s", (int)sizeof(text), text);
    CHECK_EQ_STR(captured(), want);
}

int main(void)
{
    cap = tmpfile();
    if (!cap)
        return 2;
    saved_stderr = dup(STDERR_FILENO);
    dup2(fileno(cap), STDERR_FILENO);   /* log.c writes to fd 2 ... */
    stderr = fdopen(saved_stderr, "w"); /* ... and failed CHECKs still show */
    if (!stderr)
        return 2;
    test_levels();
    test_clean();
    test_cut();
    return check_summary();
}
