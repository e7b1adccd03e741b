/* test-verify.c - the restore's verifier (engine/verify.c) on fabricated
 * images.
 *
 * Design: a forked child sets up a little state and pauses; the test
 * builds an image of it from its /proc, as the dump would record it (an
 * image the child matches exactly), and runs ghost_verify_tree on the
 * child. Then each test changes one piece of that image -- an fd's flags,
 * a vma's VmFlags, a split vma, oom_score_adj, a thread's name, a POSIX
 * timer, an fd missing -- and checks the verifier names it with the
 * severity verify.c's table gives it. A child that is gone is a failure
 * to look (-errno), never a yes.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mem.h"
#include "verify.h"

/* ---- the child ---------------------------------------------------------- */

static pid_t s_child(void)
{
    int p[2];
    cr_assert(pipe(p) == 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        /* two adjacent anonymous mappings the kernel keeps as one */
        char *m = mmap(NULL, 8 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (m == MAP_FAILED)
            _exit(1);
        memset(m, 1, 8 * 4096);
        int fd = open("/dev/null", O_WRONLY | O_APPEND);
        (void)fd;
        prctl(PR_SET_NAME, "verify-child");
        if (write(p[1], "r", 1) != 1)
            _exit(1);
        for (;;)
            pause();
    }
    close(p[1]);
    char c;
    cr_assert(read(p[0], &c, 1) == 1);
    close(p[0]);
    return pid;
}

static void s_kill(pid_t pid)
{
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

/* ---- the image of it ---------------------------------------------------- */

/* Everything one fabricated image holds (all of it freed at once). */
typedef struct s_img {
    rst_image_t im;
    rst_proc_t pr;
    rst_rec_t hrec, prec, trec;
    Cairn__Ghost__ImageHeader h;
    Cairn__Ghost__Process p;
    Cairn__Ghost__Creds cr;
    Cairn__Ghost__Thread th;
    Cairn__Ghost__Rlimit rl[RLIM_NLIMITS], *rlp[RLIM_NLIMITS];
    Cairn__Ghost__SigAction sa[64], *sap[64];
    uint32_t uid[4], gid[4];
    char comm[64], tcomm[64], cwd[4096];
    char *timers;
    proc_vmas_t vm;
    Cairn__Ghost__Vma *vmas;
    rst_rec_t *vrecs;
    Cairn__Ghost__Fd *fds;
    rst_rec_t *frecs;
    char (*links)[512];
} s_img_t;

static void s_strip(char *s)
{
    s[strcspn(s, "\n")] = '\0';
}

static uint64_t s_status_hex(pid_t pid, const char *key)
{
    char *text = NULL;
    cr_assert(proc_read_file(pid, "status", &text, NULL, NULL) == 0);
    const char *v = proc_field(text, key);
    uint64_t x = v ? strtoull(v, NULL, 16) : 0;
    free(text);
    return x;
}

static void s_img_process(s_img_t *s, pid_t pid)
{
    proc_status_t st;
    proc_creds_t pc;
    char *text = NULL;
    cr_assert(proc_read_status(pid, &st, &pc, NULL) == 0);
    cairn__ghost__creds__init(&s->cr);
    memcpy(s->uid, pc.uid, sizeof(s->uid)), memcpy(s->gid, pc.gid, sizeof(s->gid));
    s->cr.uid = s->uid, s->cr.n_uid = 4, s->cr.gid = s->gid, s->cr.n_gid = 4;
    s->cr.groups = pc.groups, s->cr.n_groups = pc.n_groups;   /* freed with s */
    s->cr.cap_inh = pc.cap_inh, s->cr.cap_prm = pc.cap_prm, s->cr.cap_eff = pc.cap_eff;
    s->cr.cap_bnd = pc.cap_bnd, s->cr.cap_amb = pc.cap_amb;
    s->cr.no_new_privs = pc.no_new_privs;
    cairn__ghost__process__init(&s->p);
    s->p.pid = (uint32_t)pid;
    s->p.creds = &s->cr;
    s->p.umask = st.umask;
    for (uint32_t sig = 1; sig <= 64; sig++) {
        uint64_t bit = 1ull << (sig - 1);
        if (!((st.sig_ign | st.sig_cgt) & bit))
            continue;
        Cairn__Ghost__SigAction *a = &s->sa[s->p.n_sigactions];
        cairn__ghost__sig_action__init(a);
        a->signo = sig, a->handler = (st.sig_ign & bit) ? 1 : 0x1000;
        s->sap[s->p.n_sigactions++] = a;
    }
    s->p.sigactions = s->sap;
    uint64_t lim[RLIM_NLIMITS][2];
    cr_assert(proc_read_limits(pid, lim, RLIM_NLIMITS, NULL) == 0);
    for (uint32_t i = 0; i < RLIM_NLIMITS; i++) {
        cairn__ghost__rlimit__init(&s->rl[i]);
        s->rl[i].resource = i, s->rl[i].cur = lim[i][0], s->rl[i].max = lim[i][1];
        s->rlp[i] = &s->rl[i];
    }
    s->p.rlimits = s->rlp, s->p.n_rlimits = RLIM_NLIMITS;
    cr_assert(proc_read_personality(pid, &s->p.personality, NULL) == 0);
    cr_assert(proc_readlink(pid, "cwd", s->cwd, sizeof(s->cwd), NULL) == 0);
    s->p.cwd = s->cwd;
    cr_assert(proc_read_file(pid, "comm", &text, NULL, NULL) == 0);
    s_strip(text);
    snprintf(s->comm, sizeof(s->comm), "%s", text);
    free(text);
    s->p.comm = s->comm;
    cr_assert(ghost_verify_collect_process(pid, &s->p, &s->timers, NULL) == 0);
    cairn__ghost__thread__init(&s->th);
    s->th.tid = (uint32_t)pid, s->th.leader = true;
    s->th.sigmask = s_status_hex(pid, "SigBlk");
    cr_assert(ghost_verify_collect_thread(pid, s->tcomm, sizeof(s->tcomm), &s->th, NULL) == 0);
}

static void s_img_vmas(s_img_t *s, pid_t pid)
{
    cr_assert(proc_read_vmas(pid, true, &s->vm, NULL) == 0);
    s->vmas = calloc(s->vm.n, sizeof(*s->vmas));
    s->vrecs = calloc(s->vm.n, sizeof(*s->vrecs));
    s->pr.vmas.v = calloc(s->vm.n, sizeof(*s->pr.vmas.v));
    cr_assert(s->vmas && s->vrecs && s->pr.vmas.v);
    for (size_t i = 0; i < s->vm.n; i++) {
        const proc_vma_t *v = &s->vm.v[i];
        Cairn__Ghost__Vma *m = &s->vmas[i];
        Cairn__Ghost__VmaKind k;
        if (mem_vma_kind(pid, v, &k, NULL) < 0)   /* criterion's own, say */
            k = v->shared ? CAIRN__GHOST__VMA_KIND__VMA_FILE_SHARED
                          : CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE;
        cairn__ghost__vma__init(m);
        m->start = v->start, m->end = v->end, m->prot = v->prot, m->pgoff = v->pgoff;
        m->flags = v->shared ? MAP_SHARED : MAP_PRIVATE;
        m->kind = k, m->path = (char *)v->path, m->smaps_flags = (char *)v->vmflags_text;
        cairn__ghost__record__init(&s->vrecs[i]);
        s->vrecs[i].r_case = CAIRN__GHOST__RECORD__R_VMA, s->vrecs[i].vma = m;
        s->pr.vmas.v[i] = &s->vrecs[i];
    }
    s->pr.vmas.n = s->pr.vmas.cap = s->vm.n;
}

static void s_img_fds(s_img_t *s, pid_t pid)
{
    int *fds = NULL;
    size_t n = 0;
    cr_assert(proc_list_dir(pid, "fd", &fds, &n, NULL) == 0);
    s->fds = calloc(n + 1, sizeof(*s->fds));
    s->frecs = calloc(n + 1, sizeof(*s->frecs));
    s->links = calloc(n + 1, sizeof(*s->links));
    s->pr.fds.v = calloc(n + 1, sizeof(*s->pr.fds.v));
    cr_assert(s->fds && s->frecs && s->links && s->pr.fds.v);
    for (size_t i = 0; i < n; i++) {
        char name[32];
        proc_fdinfo_t fi;
        snprintf(name, sizeof(name), "fd/%d", fds[i]);
        cr_assert(proc_readlink(pid, name, s->links[i], sizeof(s->links[i]), NULL) == 0);
        cr_assert(proc_read_fdinfo(pid, fds[i], &fi, NULL) == 0);
        Cairn__Ghost__Fd *f = &s->fds[i];
        cairn__ghost__fd__init(f);
        f->fd = fds[i], f->path = s->links[i];   /* FD_REGULAR: the path must match */
        f->flags = fi.flags & ~O_CLOEXEC, f->cloexec = (fi.flags & O_CLOEXEC) != 0;
        f->pos = fi.pos;
        cairn__ghost__record__init(&s->frecs[i]);
        s->frecs[i].r_case = CAIRN__GHOST__RECORD__R_FD, s->frecs[i].fd = f;
        s->pr.fds.v[i] = &s->frecs[i];
    }
    s->pr.fds.n = s->pr.fds.cap = n;
    free(fds);
}

static s_img_t *s_img(pid_t pid)
{
    s_img_t *s = calloc(1, sizeof(*s));
    cr_assert(s);
    cairn__ghost__image_header__init(&s->h);
    cairn__ghost__record__init(&s->hrec);
    s->hrec.r_case = CAIRN__GHOST__RECORD__R_HEADER, s->hrec.header = &s->h;
    s_img_process(s, pid);
    cairn__ghost__record__init(&s->prec);
    s->prec.r_case = CAIRN__GHOST__RECORD__R_PROCESS, s->prec.process = &s->p;
    cairn__ghost__record__init(&s->trec);
    s->trec.r_case = CAIRN__GHOST__RECORD__R_THREAD, s->trec.thread = &s->th;
    s->pr.process = &s->prec;
    s->pr.threads.v = calloc(1, sizeof(rst_rec_t *));
    cr_assert(s->pr.threads.v);
    s->pr.threads.v[0] = &s->trec, s->pr.threads.n = s->pr.threads.cap = 1;
    s->pr.parent = -1;
    s_img_vmas(s, pid);
    s_img_fds(s, pid);
    s->im.header = &s->hrec;
    s->im.procs = &s->pr, s->im.n_procs = 1;
    return s;
}

static void s_img_free(s_img_t *s)
{
    free(s->cr.groups);
    free(s->timers);
    proc_vmas_free(&s->vm);
    free(s->vmas), free(s->vrecs), free(s->pr.vmas.v);
    free(s->fds), free(s->frecs), free(s->links), free(s->pr.fds.v);
    free(s->pr.threads.v);
    free(s);
}

/* Runs the verifier on pid; the first difference whose what holds key
 * (NULL if none). */
static const ghost_verify_diff_t *s_find(const ghost_verify_t *v, const char *key)
{
    for (size_t i = 0; i < v->n; i++)
        if (strstr(v->v[i].what, key))
            return &v->v[i];
    return NULL;
}

/* ---- tests -------------------------------------------------------------- */

/* Each test's child and its image, and the verifier's findings. */
static pid_t s_pid;
static s_img_t *s_im;
static ghost_verify_t s_v;
static cairn_error_t s_err;

static void s_setup(void)
{
    s_pid = s_child();
    s_im = s_img(s_pid);
    s_v = (ghost_verify_t){ 0 };
    s_err = (cairn_error_t){ 0 };
}

static void s_teardown(void)
{
    ghost_verify_free(&s_v);
    s_img_free(s_im);
    if (s_pid > 0)
        s_kill(s_pid);
}

/* The verifier on the child, its findings in s_v (freed first). */
static int s_run(void)
{
    ghost_verify_free(&s_v);
    return ghost_verify_tree(&s_im->im, &s_pid, &s_v, &s_err);
}

Test(verify, the_image_of_a_process_matches_it, .init = s_setup, .fini = s_teardown)
{
    int r = s_run();
    for (size_t i = 0; i < s_v.n; i++)
        cr_log_info("%s: want %s got %s", s_v.v[i].what, s_v.v[i].want, s_v.v[i].got);
    cr_expect_eq(r, 0, "%s", s_err.message);
    cr_expect_eq(s_v.n_fatal, 0);
    cr_expect_eq(s_v.n_cosmetic, 0);
}

Test(verify, fd_flags_that_differ_are_fatal_and_named, .init = s_setup, .fini = s_teardown)
{
    Cairn__Ghost__Fd *f = NULL;
    for (size_t i = 0; i < s_im->pr.fds.n && !f; i++)
        f = strcmp(s_im->fds[i].path, "/dev/null") == 0 && (s_im->fds[i].flags & O_APPEND)
                ? &s_im->fds[i] : NULL;
    cr_assert(f, "the child's /dev/null fd");
    f->flags |= O_NONBLOCK;
    cr_expect_eq(s_run(), -EPROTO);
    char what[32];
    snprintf(what, sizeof(what), "fd %d flags", f->fd);
    const ghost_verify_diff_t *d = s_find(&s_v, what);
    cr_assert(d, "no difference named '%s'", what);
    cr_expect_not(d->cosmetic);
    cr_expect_eq(d->pid, (uint32_t)s_pid);
    cr_expect(strstr(s_err.message, what), "%s", s_err.message);
    cr_expect(strstr(s_err.message, "verify"), "%s", s_err.message);
}

Test(verify, a_missing_fd_and_an_extra_one_are_fatal, .init = s_setup, .fini = s_teardown)
{
    cr_assert(s_im->pr.fds.n >= 2);
    s_im->fds[s_im->pr.fds.n - 1].fd = 900;   /* not open; its old number is */
    cr_expect_eq(s_run(), -EPROTO);
    const ghost_verify_diff_t *d = s_find(&s_v, "fd 900");
    cr_assert(d);
    cr_expect_str_eq(d->got, "closed");
    cr_expect_eq(s_v.n_fatal, 2, "fd 900 closed, its old number open: %zu", s_v.n_fatal);
}

Test(verify, vmflags_ac_alone_is_cosmetic_others_fatal, .init = s_setup, .fini = s_teardown)
{
    Cairn__Ghost__Vma *m = NULL;
    /* a private file mapping without ac (the executable's text) */
    for (size_t i = 0; i < s_im->vm.n && !m; i++)
        if (s_im->vmas[i].kind == CAIRN__GHOST__VMA_KIND__VMA_FILE_PRIVATE &&
            !strstr(s_im->vmas[i].smaps_flags, " ac"))
            m = &s_im->vmas[i];
    cr_assert(m);
    char with_ac[160], with_dd[160];
    snprintf(with_ac, sizeof(with_ac), "%s ac", m->smaps_flags);
    snprintf(with_dd, sizeof(with_dd), "%s dd", m->smaps_flags);
    m->smaps_flags = with_ac;
    cr_expect_eq(s_run(), 0, "%s", s_err.message);
    cr_expect_eq(s_v.n_fatal, 0);
    cr_expect_eq(s_v.n_cosmetic, 1);
    cr_expect(s_v.n == 1 && s_v.v[0].cosmetic && strstr(s_v.v[0].what, "VmFlags ac"));
    /* smaps is read only where flags need it: a dd does */
    m->smaps_flags = with_dd;
    cr_expect_eq(s_run(), -EPROTO);
    const ghost_verify_diff_t *d = s_find(&s_v, "VmFlags");
    cr_assert(d);
    cr_expect_not(d->cosmetic);
    cr_expect(strstr(d->want, "+dd"), "%s", d->want);
}

Test(verify, a_vma_the_kernel_merged_is_cosmetic, .init = s_setup, .fini = s_teardown)
{
    /* the child's 8-page mapping as two vmas in the image */
    size_t n = s_im->vm.n, k = n;
    for (size_t i = 0; i < n && k == n; i++)
        if (s_im->vmas[i].kind == CAIRN__GHOST__VMA_KIND__VMA_ANON_PRIVATE &&
            s_im->vmas[i].end - s_im->vmas[i].start >= 2 * 4096)
            k = i;
    cr_assert(k < n);
    rst_rec_t **v2 = calloc(n + 1, sizeof(*v2));
    Cairn__Ghost__Vma half = s_im->vmas[k];
    rst_rec_t rec = s_im->vrecs[k];
    cr_assert(v2);
    half.start = s_im->vmas[k].start + 4096;
    s_im->vmas[k].end = half.start;
    rec.vma = &half;
    for (size_t i = 0, j = 0; i < n; i++) {
        v2[j++] = s_im->pr.vmas.v[i];
        if (i == k)
            v2[j++] = &rec;
    }
    free(s_im->pr.vmas.v);
    s_im->pr.vmas.v = v2, s_im->pr.vmas.n = n + 1;
    cr_expect_eq(s_run(), 0, "%s", s_err.message);
    cr_expect_eq(s_v.n_cosmetic, 1);
    cr_expect(s_v.n == 1 && strstr(s_v.v[0].what, "merged"));
    half.prot = PROT_READ;   /* a real loss: a range of another protection */
    cr_expect_eq(s_run(), -EPROTO);
}

Test(verify, oom_score_adj_thread_name_and_timers_are_fatal, .init = s_setup,
     .fini = s_teardown)
{
    int oom = s_im->p.oom_score_adj;
    s_im->p.oom_score_adj = oom + 17;
    cr_expect_eq(s_run(), -EPROTO);
    cr_expect(strstr(s_err.message, "oom_score_adj"), "%s", s_err.message);
    s_im->p.oom_score_adj = oom;
    s_im->th.comm = "worker";
    cr_expect_eq(s_run(), -EPROTO);
    cr_expect(strstr(s_err.message, "comm") && strstr(s_err.message, "worker"), "%s",
              s_err.message);
    s_im->th.comm = s_im->tcomm;
    s_im->p.timers = "ID: 0\nsignal: 14/0000000000000000\nnotify: signal/pid.12\nClockID: 1\n";
    cr_expect_eq(s_run(), -EPROTO);
    cr_expect(s_find(&s_v, "timers"));
    /* an older image (nothing recorded for the verifier) is not held to it */
    s_im->p.verify_recorded = false;
    cr_expect_eq(s_run(), 0, "%s", s_err.message);
}

Test(verify, a_process_it_cannot_read_is_an_error_not_a_yes, .init = s_setup,
     .fini = s_teardown)
{
    s_kill(s_pid);
    int r = s_run();
    s_pid = 0;
    cr_expect(r < 0 && r != -EPROTO, "%d: %s", r, s_err.message);
}

Test(verify, differences_beyond_the_cap_are_counted)
{
    ghost_verify_t v = { 0 };
    for (int i = 0; i < 100; i++)
        ghost_verify_differ(&v, NULL, i % 2, "x", "a", "b");
    cr_expect_eq(v.n, GHOST_VERIFY_MAX);
    cr_expect_eq(v.n_fatal, 50);
    cr_expect_eq(v.n_cosmetic, 50);
    ghost_verify_free(&v);
    ghost_verify_free(&v);
    ghost_verify_free(NULL);
}
