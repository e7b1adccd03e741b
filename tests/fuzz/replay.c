/* replay.c - runs a fuzz target's corpus without libFuzzer: the `unit`
 * suite's fuzz-* tests, in every build with tests (gcc, ASan/UBSan in CI).
 *
 *   replay-<target> PATH...
 *
 * Feeds every regular file of each PATH (a file, or a directory read in
 * name order, not recursively) to LLVMFuzzerTestOneInput, as libFuzzer
 * does when it is given files. A crash, a sanitizer report or a failed
 * FUZZ_CHECK aborts the process, which fails the test. Exit codes: 0 every
 * input ran; 1 a PATH could not be read or held no input at all (a replay
 * of nothing would pass whatever the target did); 100 wrong usage.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"
#include "util/cleanup.h"
#include "util/fileio.h"

/* Largest input replayed: a corpus file is small; this is a typo guard. */
#define S_MAX_INPUT (64u << 20)

/* Runs the target on one file's bytes; 0 or -errno. */
static int s_run_file(const char *path)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int r = cairn_read_file(path, S_MAX_INPUT, &buf, &len);

    if (r < 0) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(-r));
        return r;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)buf, len);
    return 0;
}

static int s_is_regular(const char *path)
{
    struct stat st;

    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Runs every regular file of dir in name order; the count or -errno. */
static int s_run_dir(const char *dir)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, NULL, alphasort), count = 0, r = 0;

    if (n < 0) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -errno;
    }
    for (int i = 0; i < n; i++) {
        _cleanup_free_ char *path = NULL;
        if (r == 0 && asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0)
            r = -ENOMEM;
        else if (r == 0 && s_is_regular(path) && (r = s_run_file(path)) == 0)
            count++;
        free(names[i]);
    }
    free(names);
    return r < 0 ? r : count;
}

int main(int argc, char **argv)
{
    int total = 0;

    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 100;
    }
    for (int i = 1; i < argc; i++) {
        int n = s_is_regular(argv[i]) ? (s_run_file(argv[i]) == 0 ? 1 : -1)
                                      : s_run_dir(argv[i]);
        if (n < 0)
            return 1;
        printf("replay: %d input%s from %s\n", n, n == 1 ? "" : "s", argv[i]);
        total += n;
    }
    if (total == 0) {
        fprintf(stderr, "replay: no input found: nothing was tested\n");
        return 1;
    }
    printf("replay: %d inputs, no crash\n", total);
    return 0;
}
