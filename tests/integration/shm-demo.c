/* shm-demo - an ordinary program sharing memory the POSIX or System V
 * way, knowing nothing of Cairn: the "unmodified program" of dsmd's
 * integration test, run with `cairn run --dsm` on different nodes.
 *
 *   shm-demo posix-put NAME VALUE      shm_open(O_CREAT), ftruncate, mmap,
 *                                      store VALUE (a u64) at offset 0
 *   shm-demo posix-get NAME SECONDS    shm_open, fstat, mmap; wait up to
 *                                      SECONDS for a non-zero word, print it
 *   shm-demo sysv-put KEY VALUE        shmget(IPC_CREAT), shmat, store, shmdt
 *   shm-demo sysv-get KEY SECONDS      shmget, shmat; the same wait, print
 *   shm-demo posix-unlink NAME         shm_unlink
 * Exit 0, or 1 with the failing call and errno on stderr.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int s_die(const char *what)
{
    fprintf(stderr, "shm-demo: %s: %s\n", what, strerror(errno));
    return 1;
}

/* Waits up to seconds for *w to be non-zero; prints it. */
static int s_wait_print(volatile uint64_t *w, int seconds)
{
    for (int i = 0; i < seconds * 100 && *w == 0; i++) {
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    printf("%llu\n", (unsigned long long)*w);
    return *w ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *cmd = argv[1];
    if (strcmp(cmd, "posix-put") == 0 && argc == 4) {
        int fd = shm_open(argv[2], O_CREAT | O_RDWR, 0600);
        if (fd < 0)
            return s_die("shm_open");
        if (ftruncate(fd, 8192) < 0)
            return s_die("ftruncate");
        uint64_t *w = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (w == MAP_FAILED)
            return s_die("mmap");
        close(fd);
        *(volatile uint64_t *)w = strtoull(argv[3], NULL, 0);
        return munmap(w, 8192) < 0 ? s_die("munmap") : 0;
    }
    if (strcmp(cmd, "posix-get") == 0 && argc == 4) {
        int fd = shm_open(argv[2], O_RDONLY, 0);
        struct stat st;
        if (fd < 0)
            return s_die("shm_open");
        if (fstat(fd, &st) < 0 || st.st_size < 8)
            return s_die("fstat");
        uint64_t *w = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
        if (w == MAP_FAILED)
            return s_die("mmap");
        close(fd);
        int r = s_wait_print(w, atoi(argv[3]));
        munmap(w, (size_t)st.st_size);
        return r;
    }
    if (strcmp(cmd, "sysv-put") == 0 && argc == 4) {
        int id = shmget((key_t)strtol(argv[2], NULL, 0), 4096, IPC_CREAT | 0600);
        if (id < 0)
            return s_die("shmget");
        uint64_t *w = shmat(id, NULL, 0);
        if (w == (void *)-1)
            return s_die("shmat");
        *(volatile uint64_t *)w = strtoull(argv[3], NULL, 0);
        return shmdt(w) < 0 ? s_die("shmdt") : 0;
    }
    if (strcmp(cmd, "sysv-get") == 0 && argc == 4) {
        int id = shmget((key_t)strtol(argv[2], NULL, 0), 0, 0);
        if (id < 0)
            return s_die("shmget");
        uint64_t *w = shmat(id, NULL, SHM_RDONLY);
        if (w == (void *)-1)
            return s_die("shmat");
        int r = s_wait_print(w, atoi(argv[3]));
        shmdt(w);
        return r;
    }
    if (strcmp(cmd, "posix-unlink") == 0)
        return shm_unlink(argv[2]) < 0 ? s_die("shm_unlink") : 0;
    return 2;
}
