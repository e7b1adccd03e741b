/* state-basic.c - cases that prove the harness itself: a page of memory
 * that must come back, a file kind that must stay refused (a packet
 * socket: no plan to checkpoint one), and a piece of state the image
 * records but no restorer puts back today -- a thread's name
 * (pthread_setname_np): the verifier must fail the restore naming it
 * (flag "lost"), and with --no-verify the case finds it gone. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/if_ether.h>

#include "state.h"

#define S_PAGES 16

static int s_memory_setup(void **ctx)
{
    uint8_t *p = mmap(NULL, S_PAGES * 4096, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        return state_fail("mmap: %s", strerror(errno));
    for (size_t i = 0; i < S_PAGES * 4096; i++)
        p[i] = (uint8_t)(i * 7 + i / 4096);
    *ctx = p;
    return 0;
}

static int s_memory_check(void *ctx)
{
    const uint8_t *p = ctx;
    for (size_t i = 0; i < S_PAGES * 4096; i++)
        if (p[i] != (uint8_t)(i * 7 + i / 4096))
            return state_fail("byte %zu is %u, not %u", i, p[i],
                              (uint8_t)(i * 7 + i / 4096));
    return 0;
}

static int s_packet_setup(void **ctx)
{
    (void)ctx;
    int fd = socket(AF_PACKET, SOCK_DGRAM, 0);
    if (fd < 0)
        return state_fail("socket(AF_PACKET): %s", strerror(errno));
    return 0;
}

#define S_THREAD_NAME "ghost-worker"

/* The named thread: its tid, published once it is named. */
typedef struct s_named {
    pthread_t t;
    volatile pid_t tid;
} s_named_t;

static void *s_named_main(void *arg)
{
    s_named_t *n = arg;
    n->tid = (pid_t)syscall(SYS_gettid);
    for (;;)
        pause();
    return NULL;
}

static int s_thread_name_setup(void **ctx)
{
    static s_named_t n;
    int e = pthread_create(&n.t, NULL, s_named_main, &n);
    if (e)
        return state_fail("pthread_create: %s", strerror(e));
    e = pthread_setname_np(n.t, S_THREAD_NAME);
    if (e)
        return state_fail("pthread_setname_np: %s", strerror(e));
    while (!n.tid)
        usleep(1000);
    *ctx = &n;
    return 0;
}

static int s_thread_name_check(void *ctx)
{
    const s_named_t *n = ctx;
    char name[32] = "";
    int e = pthread_getname_np(n->t, name, sizeof name);
    if (e)
        return state_fail("pthread_getname_np: %s", strerror(e));
    if (strcmp(name, S_THREAD_NAME) != 0)
        return state_fail("thread %d is named '%s', not '%s'", (int)n->tid, name,
                          S_THREAD_NAME);
    return 0;
}

const state_case_t state_cases_basic[] = {
    { .name = "basic-memory", .setup = s_memory_setup, .check = s_memory_check },
    { .name = "basic-packet-socket", .expect = STATE_REFUSE, .reason = "socket",
      .setup = s_packet_setup },
    /* restored since the process area names threads again (procstate.c) */
    { .name = "basic-thread-name", .setup = s_thread_name_setup, .check = s_thread_name_check },
    { .name = NULL },
};
