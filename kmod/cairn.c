// SPDX-License-Identifier: GPL-2.0
/*
 * cairn.c - /dev/cairn: page-fault and process-event hooks for Cairn
 *
 * Object model. Each open of /dev/cairn is a struct cairn_file: an event
 * reader (subscriptions, a bounded ring of struct cairn_event) and the
 * owner of up to CAIRN_REGION_MAX regions. A struct cairn_rgn is a sparse
 * array of pages (an xarray indexed by page) filled by its server, the file
 * returned by CAIRN_IOC_REGION_CREATE. The region is refcounted: by its
 * owner's slot, by the server file and by every vma mapping it, so a
 * mapping outlives both files and a dead server only turns missing pages
 * into SIGBUS.
 *
 * Locking. s_readers_lock guards the readers list (RCU for the tracepoint
 * probes, which run with preemption disabled and must never sleep);
 * cairn_file.lock a reader's subscriptions and ring; the xarray lock a
 * region's pages; cairn_rgn.lock its waiting faults and dead flag. A page is
 * stored before its requests are completed, so a fault that saw no page
 * under cairn_rgn.lock is always woken. Faults return their page locked and
 * check it is still stored; page_mkwrite checks the read-only mark under the
 * page lock; CAIRN_IOC_DROP and _PROTECT lock each page between two unmaps:
 * a dropped page never stays mapped, nor a protected one writable (the
 * truncate pattern).
 *
 * A fault that may retry releases mmap_lock while it waits (as userfaultfd
 * does) and returns VM_FAULT_RETRY; its outcome is then read from the
 * region: a page, an error entry (FAIL or a deadline) or a failed write
 * mark, which the retried fault turns into SIGBUS.
 */
#include <linux/anon_inodes.h>
#include <linux/cgroup.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/idr.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/pagemap.h>
#include <linux/pid_namespace.h>
#include <linux/poll.h>
#include <linux/rculist.h>
#include <linux/sched/signal.h>
#include <linux/slab.h>
#include <linux/tracepoint.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/xarray.h>
#include <linux/cairn.h>

#define CAIRN_READ_BATCH	64	/* records per read() */
#define CAIRN_REQ_MAX		4096	/* faults waiting per region */
#define CAIRN_PAGE_BATCH	64	/* pages dropped or protected per unmap */
#define CAIRN_WP_FAILED		XA_MARK_1 /* a write the server refused */
#define CAIRN_RDONLY		XA_MARK_2 /* report the first write */

#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
static inline void vm_flags_set(struct vm_area_struct *vma, unsigned long f)
{
	vma->vm_flags |= f;
}
#endif

/*
 * Records for read() and poll(): a reader's event ring or a region's unsent
 * faults. First in both files' private data, so they share s_read/s_poll.
 */
struct cairn_queue {
	wait_queue_head_t wq;		/* read() and poll() */
	const struct cairn_queue_ops *ops;
};

struct cairn_queue_ops {
	size_t size;			/* of a record */
	/* take up to n records into buf (no buf: any?); untake: copy failed */
	unsigned int (*take)(struct cairn_queue *q, void *buf, unsigned int n);
	void (*untake)(struct cairn_queue *q, void *buf, unsigned int n);
};

struct cairn_sub {
	u32 kind;			/* CAIRN_SUB_* */
	u32 flags;			/* CAIRN_SUBF_* */
	u64 id;				/* the id as given (pid or cgroup id) */
	struct pid *pid;		/* CAIRN_SUB_PID: the process, held */
};

struct cairn_rgn {
	struct cairn_queue q;		/* the server's: unsent faults */
	struct kref ref;		/* owner slot + server + each vma */
	int id;				/* map_offset is id << 32 */
	unsigned long base_pgoff;	/* vm_pgoff of the region's page 0 */
	unsigned long npages;		/* size in pages */
	unsigned long timeout;		/* fault deadline, jiffies */
	struct inode *inode;		/* /dev/cairn's, for unmapping; held */
	struct xarray pages;		/* index -> page or error value */
	spinlock_t lock;		/* reqs, nreqs, nunsent, dead */
	struct list_head reqs;		/* struct cairn_req, oldest first */
	unsigned int nreqs, nunsent;	/* length of reqs; not read yet */
	bool dead;			/* the server file is closed */
	wait_queue_head_t fault_wq;	/* faults waiting for an answer */
};

/* A waiting fault, on its first thread's stack (no allocation per fault); shared per page. */
struct cairn_req {
	struct list_head node;		/* in cairn_rgn.reqs; empty: answered */
	unsigned long idx;		/* page index */
	u64 addr;			/* first faulting address */
	u32 flags;			/* CAIRN_FAULT_* */
	u32 tid;			/* first faulting thread */
	bool sent;			/* read() by the server */
};

struct cairn_file {
	struct cairn_queue q;		/* the event ring */
	struct list_head node;		/* in s_readers */
	struct pid_namespace *pidns;	/* the opener's; ids are given in it */
	spinlock_t lock;		/* subs, nsubs, ring, counters */
	struct cairn_sub subs[CAIRN_SUB_MAX];
	unsigned int nsubs;		/* used entries of subs */
	struct cairn_event *ring;	/* CAIRN_QUEUE_LEN records */
	unsigned int head, tail;	/* free-running indexes into ring */
	u64 lost_pending;		/* dropped since the last OVERFLOW record */
	u64 delivered, lost;		/* totals for CAIRN_IOC_STATS */
	struct mutex regions_lock;	/* regions */
	struct cairn_rgn *regions[CAIRN_REGION_MAX];
};

static_assert(offsetof(struct cairn_file, q) == 0 && offsetof(struct cairn_rgn, q) == 0);

static LIST_HEAD(s_readers);
static DEFINE_SPINLOCK(s_readers_lock);
static DEFINE_IDA(s_region_ida);

static bool s_sub_match(const struct cairn_sub *s, struct task_struct *p)
{
	struct task_struct *t = p, *parent;
	struct cgroup *cg;
	int depth;

	if (s->kind == CAIRN_SUB_CGROUP) {
		for (cg = task_dfl_cgroup(p); cg; cg = cgroup_parent(cg))
			if (cgroup_id(cg) == s->id)
				return true;
		return false;
	}
	/* init_task is its own parent; the depth bound is belt and braces */
	for (depth = 0; depth < 256; depth++, t = parent) {
		if (task_tgid(t) == s->pid)
			return true;
		parent = rcu_dereference(t->real_parent);
		if (!(s->flags & CAIRN_SUBF_TREE) || parent == t)
			return false;
	}
	return false;
}

/* A record of p, or without p the OVERFLOW record f owes; f->lock held. */
static void s_fill(struct cairn_file *f, struct cairn_event *ev,
		   struct task_struct *p, u32 type, u32 flags, s32 code)
{
	*ev = (struct cairn_event){ .type = p ? type : CAIRN_EV_OVERFLOW, .flags = flags,
				    .exit_code = code, .time_ns = ktime_get_ns() };
	if (!p) {
		ev->lost = f->lost_pending;
		f->lost_pending = 0;
		return;
	}
	ev->pid = task_tgid_nr_ns(p, f->pidns);
	ev->tid = task_pid_nr_ns(p, f->pidns);
	ev->ppid = task_tgid_nr_ns(rcu_dereference(p->real_parent), f->pidns);
	ev->cgroup_id = cgroup_id(task_dfl_cgroup(p));
	strscpy(ev->comm, p->comm, sizeof(ev->comm));
}

/* Queue one record, after the OVERFLOW record it owes; never waits. */
static void s_push(struct cairn_file *f, struct task_struct *p, u32 type, u32 flags, s32 code)
{
	if (CAIRN_QUEUE_LEN - (f->head - f->tail) < (f->lost_pending ? 2 : 1)) {
		f->lost_pending++;
		f->lost++;
		return;
	}
	if (f->lost_pending)
		s_fill(f, &f->ring[f->head++ % CAIRN_QUEUE_LEN], NULL, 0, 0, 0);
	s_fill(f, &f->ring[f->head++ % CAIRN_QUEUE_LEN], p, type, flags, code);
}

static void s_emit(struct task_struct *p, u32 type, u32 flags, s32 code)
{
	struct cairn_file *f;
	unsigned int i;
	bool queued;

	rcu_read_lock();
	list_for_each_entry_rcu(f, &s_readers, node) {
		if (!READ_ONCE(f->nsubs))
			continue;
		spin_lock(&f->lock);
		for (i = 0, queued = false; i < f->nsubs && !queued; i++)
			queued = s_sub_match(&f->subs[i], p);
		if (queued)
			s_push(f, p, type, flags, code);
		spin_unlock(&f->lock);
		if (queued)
			wake_up_interruptible(&f->q.wq);
	}
	rcu_read_unlock();
}

static void s_on_fork(void *data, struct task_struct *parent, struct task_struct *child)
{
	s_emit(child, CAIRN_EV_FORK, same_thread_group(parent, child) ? CAIRN_EVF_THREAD : 0, 0);
}

static void s_on_exec(void *data, struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm)
{
	s_emit(p, CAIRN_EV_EXEC, 0, 0);
}

static void s_on_exit(void *data, struct task_struct *p)
{
	s_emit(p, CAIRN_EV_EXIT, thread_group_leader(p) ? 0 : CAIRN_EVF_THREAD, p->exit_code);
}

static struct {
	const char *name;
	void *probe;
	struct tracepoint *tp;
} s_tps[] = {
	{ "sched_process_fork", s_on_fork },
	{ "sched_process_exec", s_on_exec },
	{ "sched_process_exit", s_on_exit },
};

/* CAIRN_IOC_SUBSCRIBE (add) and CAIRN_IOC_UNSUBSCRIBE */
static int s_subscribe(struct cairn_file *f, void __user *arg, bool add)
{
	struct cairn_subscribe req;
	struct pid *pid = NULL;
	int ret = add ? -ENOSPC : -ENOENT;
	unsigned int i;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (add && req.kind == CAIRN_SUB_PID) {
		if (req.flags & ~CAIRN_SUBF_TREE || !req.id || req.id > INT_MAX)
			return -EINVAL;
		pid = find_get_pid(req.id);
		if (!pid || !pid_task(pid, PIDTYPE_TGID)) {
			put_pid(pid);
			return -ESRCH;
		}
	} else if (add && (req.kind != CAIRN_SUB_CGROUP || req.flags || !req.id)) {
		return -EINVAL;
	}
	spin_lock(&f->lock);
	if (add && f->nsubs < CAIRN_SUB_MAX) {
		f->subs[f->nsubs] = (struct cairn_sub){ .kind = req.kind, .flags = req.flags,
							.id = req.id, .pid = pid };
		WRITE_ONCE(f->nsubs, f->nsubs + 1);
		pid = NULL;
		ret = 0;
	}
	for (i = 0; !add && ret && i < f->nsubs; i++) {
		if (f->subs[i].kind == req.kind && f->subs[i].id == req.id &&
		    f->subs[i].flags == req.flags) {
			pid = f->subs[i].pid;
			f->subs[i] = f->subs[f->nsubs - 1];
			WRITE_ONCE(f->nsubs, f->nsubs - 1);
			ret = 0;
		}
	}
	spin_unlock(&f->lock);
	put_pid(pid);
	return ret;
}

static int s_stats(struct cairn_file *f, void __user *arg)
{
	struct cairn_stats st;

	spin_lock(&f->lock);
	st = (struct cairn_stats){ f->delivered, f->lost, f->head - f->tail, 0 };
	spin_unlock(&f->lock);
	return copy_to_user(arg, &st, sizeof(st)) ? -EFAULT : 0;
}

/* Take up to n records (an owed OVERFLOW first when nothing else is queued). */
static unsigned int s_ev_take(struct cairn_queue *q, void *buf, unsigned int n)
{
	struct cairn_file *f = (struct cairn_file *)q;
	struct cairn_event *ev = buf;
	unsigned int i = 0;

	if (!buf)
		return READ_ONCE(f->head) != READ_ONCE(f->tail) || READ_ONCE(f->lost_pending);
	spin_lock(&f->lock);
	if (f->head == f->tail && f->lost_pending)
		s_fill(f, &ev[i++], NULL, 0, 0, 0);
	for (; i < n && f->head != f->tail; i++)
		ev[i] = f->ring[f->tail++ % CAIRN_QUEUE_LEN];
	f->delivered += i;
	spin_unlock(&f->lock);
	return i;
}

/* The records are consumed: a bad buffer loses them, and says so. */
static void s_ev_untake(struct cairn_queue *q, void *buf, unsigned int n)
{
	struct cairn_file *f = (struct cairn_file *)q;

	spin_lock(&f->lock);
	f->lost += n;
	f->lost_pending += n;
	f->delivered -= n;
	spin_unlock(&f->lock);
}

static const struct cairn_queue_ops s_ev_queue = {
	.size = sizeof(struct cairn_event),
	.take = s_ev_take, .untake = s_ev_untake,
};

/*
 * Up to CAIRN_READ_BATCH whole records, a stack buffer at a time (an allocation
 * per read showed in the fault round trip); blocks only while nothing was read.
 */
static ssize_t s_read(struct file *filp, char __user *ubuf, size_t count, loff_t *ppos)
{
	struct cairn_queue *q = filp->private_data;
	const struct cairn_queue_ops *ops = q->ops;
	size_t done = 0, want = min_t(size_t, count / ops->size, CAIRN_READ_BATCH);
	u64 buf[64];			/* 8 events or 16 faults a pass */
	unsigned int got;
	int ret;

	if (!want)
		return -EINVAL;
	while (done < want) {
		got = ops->take(q, buf, min_t(size_t, want - done, sizeof(buf) / ops->size));
		if (!got && done)
			break;
		if (!got) {
			if (filp->f_flags & O_NONBLOCK)
				return -EAGAIN;
			ret = wait_event_interruptible(q->wq, ops->take(q, NULL, 0));
			if (ret)
				return ret;
			continue;
		}
		if (copy_to_user(ubuf + done * ops->size, buf, got * ops->size)) {
			ops->untake(q, buf, got);
			return done ? done * ops->size : -EFAULT;
		}
		done += got;
	}
	return done * ops->size;
}

static __poll_t s_poll(struct file *filp, poll_table *wait)
{
	struct cairn_queue *q = filp->private_data;

	poll_wait(filp, &q->wq, wait);
	return q->ops->take(q, NULL, 0) ? EPOLLIN | EPOLLRDNORM : 0;
}

static void s_region_free(struct kref *ref)
{
	struct cairn_rgn *rg = container_of(ref, struct cairn_rgn, ref);
	unsigned long idx;
	void *entry;

	xa_for_each(&rg->pages, idx, entry)
		if (!xa_is_value(entry))
			put_page(entry);
	xa_destroy(&rg->pages);
	if (rg->id > 0)
		ida_free(&s_region_ida, rg->id);
	iput(rg->inode);
	kfree(rg);
}

static struct cairn_req *s_req_find(struct cairn_rgn *rg, unsigned long idx, u32 wp)
{
	struct cairn_req *req;

	list_for_each_entry(req, &rg->reqs, node)
		if (req->idx == idx && (req->flags & CAIRN_FAULT_WP) == wp)
			return req;
	return NULL;
}

/* Unlink a request (if any); its faults wake and look again. rg->lock held. */
static void s_req_done(struct cairn_rgn *rg, struct cairn_req *req)
{
	if (!req)
		return;
	list_del_init(&req->node);
	rg->nreqs--;
	rg->nunsent -= !req->sent;
}

/* Whether the faults on idx are answered; if not and expire, fail them. */
static bool s_answered(struct cairn_rgn *rg, unsigned long idx, u32 wp, bool expire)
{
	struct cairn_req *req;
	bool done;

	spin_lock(&rg->lock);
	req = s_req_find(rg, idx, wp);
	done = rg->dead || !req;
	if (!done && expire) {
		s_req_done(rg, req);
		if (wp)		/* once: the next write is asked again */
			xa_set_mark(&rg->pages, idx, CAIRN_WP_FAILED);
		else
			xa_cmpxchg(&rg->pages, idx, NULL, xa_mk_value(ETIMEDOUT), GFP_ATOMIC);
	}
	spin_unlock(&rg->lock);
	return done;
}

/*
 * Ask the server for page idx (unless asked already) and wait: 0 when the
 * caller must look again with mmap_lock held (the page is there, or writable),
 * VM_FAULT_RETRY when the lock was dropped, else VM_FAULT_SIGBUS.
 */
static vm_fault_t s_wait(struct cairn_rgn *rg, struct vm_fault *vmf, unsigned long idx, u32 flags)
{
	bool unlock = fault_flag_allow_retry_first(vmf->flags) &&
		      !(vmf->flags & FAULT_FLAG_RETRY_NOWAIT);
	struct cairn_req req = { .idx = idx, .flags = flags, .addr = vmf->address,
				 .tid = task_pid_vnr(current) };
	u32 wp = flags & CAIRN_FAULT_WP;
	bool present, wait, mine;
	long left;

	spin_lock(&rg->lock);
	present = wp ? !xa_get_mark(&rg->pages, idx, CAIRN_RDONLY) : !!xa_load(&rg->pages, idx);
	wait = !present && !rg->dead && (s_req_find(rg, idx, wp) || rg->nreqs < CAIRN_REQ_MAX);
	mine = wait && !s_req_find(rg, idx, wp);
	if (mine) {
		list_add_tail(&req.node, &rg->reqs);
		rg->nreqs++;
		rg->nunsent++;
	}
	spin_unlock(&rg->lock);
	if (!wait)
		return present ? 0 : VM_FAULT_SIGBUS;
	wake_up_interruptible(&rg->q.wq);
	if (unlock) {
		kref_get(&rg->ref);
		mmap_read_unlock(vmf->vma->vm_mm);
	}
	left = wait_event_killable_timeout(rg->fault_wq, s_answered(rg, idx, wp, false),
					   rg->timeout);
	if (!left)
		s_answered(rg, idx, wp, true);
	if (mine) {	/* killed, or the server died: req leaves with us */
		spin_lock(&rg->lock);
		if (!list_empty(&req.node))
			s_req_done(rg, &req);
		spin_unlock(&rg->lock);
		wake_up_all(&rg->fault_wq);
	}
	if (unlock) {
		kref_put(&rg->ref, s_region_free);
		return VM_FAULT_RETRY;
	}
	return left < 0 ? VM_FAULT_SIGBUS : 0;
}

static vm_fault_t s_fault(struct vm_fault *vmf)
{
	struct cairn_rgn *rg = vmf->vma->vm_private_data;
	unsigned long idx = vmf->pgoff - rg->base_pgoff;
	u32 flags = vmf->flags & FAULT_FLAG_WRITE ? CAIRN_FAULT_WRITE : 0;
	vm_fault_t ret;
	void *entry;
	int tries;

	if (idx >= rg->npages)
		return VM_FAULT_SIGBUS;
	for (tries = 0; tries < 3; tries++) {
		xa_lock(&rg->pages);
		entry = xa_load(&rg->pages, idx);
		if (entry && !xa_is_value(entry))
			get_page(entry);
		xa_unlock(&rg->pages);
		if (xa_is_value(entry))
			return VM_FAULT_SIGBUS;
		if (entry) {
			lock_page(entry);
			if (xa_load(&rg->pages, idx) == entry) {
				vmf->page = entry;
				return VM_FAULT_LOCKED;
			}
			unlock_page(entry);
			put_page(entry);
			continue;
		}
		ret = s_wait(rg, vmf, idx, flags);
		if (ret)
			return ret;
	}
	return VM_FAULT_SIGBUS;
}

/*
 * First write to a present page: report it when it is read-only. The mark is
 * read under the page lock, which CAIRN_IOC_PROTECT takes between its unmaps.
 */
static vm_fault_t s_mkwrite(struct vm_fault *vmf)
{
	struct cairn_rgn *rg = vmf->vma->vm_private_data;
	unsigned long idx = vmf->pgoff - rg->base_pgoff;
	vm_fault_t ret;

	for (;;) {
		/* no page->mapping: core mm retries forever unless it is locked */
		lock_page(vmf->page);
		ret = 0;
		if (xa_load(&rg->pages, idx) != vmf->page)
			ret = VM_FAULT_NOPAGE;	/* dropped: fault again */
		else if (xa_get_mark(&rg->pages, idx, CAIRN_WP_FAILED))
			ret = VM_FAULT_SIGBUS;
		else if (!xa_get_mark(&rg->pages, idx, CAIRN_RDONLY))
			return VM_FAULT_LOCKED;
		unlock_page(vmf->page);
		if (ret == VM_FAULT_SIGBUS)
			xa_clear_mark(&rg->pages, idx, CAIRN_WP_FAILED);
		else if (!ret)
			ret = s_wait(rg, vmf, idx, CAIRN_FAULT_WRITE | CAIRN_FAULT_WP);
		if (ret)
			return ret;
	}
}

static void s_vm_open(struct vm_area_struct *vma)
{
	kref_get(&((struct cairn_rgn *)vma->vm_private_data)->ref);
}

static void s_vm_close(struct vm_area_struct *vma)
{
	kref_put(&((struct cairn_rgn *)vma->vm_private_data)->ref, s_region_free);
}

static const struct vm_operations_struct s_vm_ops = {
	.open = s_vm_open, .close = s_vm_close, .fault = s_fault, .page_mkwrite = s_mkwrite,
};

/* The first page of [offset, offset + len), page-aligned and inside rg. */
static int s_range(struct cairn_rgn *rg, u64 offset, u64 len, unsigned long *idx)
{
	if (!len || (offset | len) & ~PAGE_MASK || offset >> PAGE_SHIFT >= rg->npages ||
	    len >> PAGE_SHIFT > rg->npages - (offset >> PAGE_SHIFT))
		return -EINVAL;
	*idx = offset >> PAGE_SHIFT;
	return 0;
}

static int s_mmap(struct file *filp, struct vm_area_struct *vma)
{
	struct cairn_file *f = filp->private_data;
	u64 id = vma->vm_pgoff >> (32 - PAGE_SHIFT);
	struct cairn_rgn *rg = NULL;
	unsigned long first;
	unsigned int i;

	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	mutex_lock(&f->regions_lock);
	for (i = 0; i < CAIRN_REGION_MAX && !rg; i++)
		if (f->regions[i] && f->regions[i]->id == id)
			rg = f->regions[i];
	if (rg && s_range(rg, (u64)(vma->vm_pgoff - rg->base_pgoff) << PAGE_SHIFT,
			  (u64)vma_pages(vma) << PAGE_SHIFT, &first))
		rg = NULL;
	if (rg)
		kref_get(&rg->ref);
	mutex_unlock(&f->regions_lock);
	if (!rg)
		return -EINVAL;
	vm_flags_set(vma, VM_DONTEXPAND | VM_DONTDUMP);
	vma->vm_private_data = rg;
	vma->vm_ops = &s_vm_ops;
	return 0;
}

static unsigned int s_srv_take(struct cairn_queue *q, void *buf, unsigned int n)
{
	struct cairn_rgn *rg = (struct cairn_rgn *)q;
	struct cairn_fault *ft = buf;
	struct cairn_req *req;
	unsigned int i = 0;

	if (!buf)
		return READ_ONCE(rg->nunsent);
	spin_lock(&rg->lock);
	list_for_each_entry(req, &rg->reqs, node) {
		if (i == n)
			break;
		if (req->sent)
			continue;
		ft[i++] = (struct cairn_fault){ .offset = req->idx * PAGE_SIZE, .addr = req->addr,
						.flags = req->flags, .tid = req->tid };
		req->sent = true;
		rg->nunsent--;
	}
	spin_unlock(&rg->lock);
	return i;
}

/* Not read after all: the next read() returns them again. */
static void s_srv_untake(struct cairn_queue *q, void *buf, unsigned int n)
{
	struct cairn_rgn *rg = (struct cairn_rgn *)q;
	struct cairn_fault *ft = buf;
	struct cairn_req *req;

	spin_lock(&rg->lock);
	while (n--) {
		req = s_req_find(rg, ft[n].offset >> PAGE_SHIFT, ft[n].flags & CAIRN_FAULT_WP);
		if (req && req->sent) {
			req->sent = false;
			rg->nunsent++;
		}
	}
	spin_unlock(&rg->lock);
}

static const struct cairn_queue_ops s_srv_queue = {
	.size = sizeof(struct cairn_fault),
	.take = s_srv_take, .untake = s_srv_untake,
};

/* Complete the request of idx and wake its faults. */
static void s_answer(struct cairn_rgn *rg, unsigned long idx, u32 wp)
{
	spin_lock(&rg->lock);
	s_req_done(rg, s_req_find(rg, idx, wp));
	spin_unlock(&rg->lock);
	wake_up_all(&rg->fault_wq);
}

static int s_serve(struct cairn_rgn *rg, void __user *arg)
{
	struct cairn_serve sv;
	struct page *page;
	unsigned long idx;
	void *old, *cur, *dst;
	bool upgrade;
	int ret;

	if (copy_from_user(&sv, arg, sizeof(sv)))
		return -EFAULT;
	upgrade = sv.flags & CAIRN_SERVE_UPGRADE;
	if (sv.reserved || sv.flags & ~(CAIRN_SERVE_RDONLY | CAIRN_SERVE_UPGRADE) ||
	    (upgrade && sv.flags != CAIRN_SERVE_UPGRADE) || !sv.src != upgrade ||
	    s_range(rg, sv.offset, PAGE_SIZE, &idx))
		return -EINVAL;
	if (upgrade) {
		old = xa_load(&rg->pages, idx);
		if (!old || xa_is_value(old))
			return -ENOENT;
		xa_clear_mark(&rg->pages, idx, CAIRN_RDONLY);
		s_answer(rg, idx, CAIRN_FAULT_WP);
		return 0;
	}
	page = alloc_page(GFP_HIGHUSER);
	if (!page)
		return -ENOMEM;
	dst = kmap_local_page(page);
	ret = copy_from_user(dst, u64_to_user_ptr(sv.src), PAGE_SIZE) ? -EFAULT : 0;
	kunmap_local(dst);
	while (!ret) {
		old = xa_load(&rg->pages, idx);
		if (old && !xa_is_value(old)) {
			ret = -EEXIST;
			break;
		}
		cur = xa_cmpxchg(&rg->pages, idx, old, page, GFP_KERNEL);
		if (cur == old)
			break;
		ret = xa_err(cur);	/* 0: raced with FAIL or a deadline */
	}
	if (ret) {
		__free_page(page);
		return ret;
	}
	if (sv.flags & CAIRN_SERVE_RDONLY)
		xa_set_mark(&rg->pages, idx, CAIRN_RDONLY);
	s_answer(rg, idx, 0);
	return 0;
}

static int s_fail(struct cairn_rgn *rg, void __user *arg)
{
	struct cairn_fail fl;
	unsigned long idx;
	void *entry;
	int ret = 0;

	if (copy_from_user(&fl, arg, sizeof(fl)))
		return -EFAULT;
	if (fl.reserved || fl.error >= 0 || fl.error < -MAX_ERRNO ||
	    s_range(rg, fl.offset, PAGE_SIZE, &idx))
		return -EINVAL;
	spin_lock(&rg->lock);
	entry = xa_load(&rg->pages, idx);
	if (entry && !xa_is_value(entry)) {
		if (s_req_find(rg, idx, CAIRN_FAULT_WP))
			xa_set_mark(&rg->pages, idx, CAIRN_WP_FAILED);
		else
			ret = -EEXIST;
	} else {
		ret = xa_err(xa_store(&rg->pages, idx, xa_mk_value(-fl.error), GFP_ATOMIC));
	}
	spin_unlock(&rg->lock);
	if (!ret)
		s_answer(rg, idx, entry && !xa_is_value(entry) ? CAIRN_FAULT_WP : 0);
	return ret;
}

/*
 * CAIRN_IOC_DROP (the range's pages and errors leave) and _PROTECT (its pages
 * stay, marked read-only). Either way their ptes go, a batch at a time: unmap,
 * lock and unlock each page (a fault or page_mkwrite that saw it before holds
 * that lock until its pte is in), unmap again.
 */
static int s_unmap(struct cairn_rgn *rg, void __user *arg, bool drop)
{
	struct page *pages[CAIRN_PAGE_BATCH];
	unsigned long idx, end, first;
	unsigned int i, n = 0;
	struct cairn_drop dr;
	loff_t start, len;
	void *entry;

	if (copy_from_user(&dr, arg, sizeof(dr)))
		return -EFAULT;
	if (s_range(rg, dr.offset, dr.len, &first))
		return -EINVAL;
	end = first + (dr.len >> PAGE_SHIFT);
	for (idx = first; idx < end; idx++) {
		xa_lock(&rg->pages);
		entry = drop ? __xa_erase(&rg->pages, idx) : xa_load(&rg->pages, idx);
		if (entry && !xa_is_value(entry)) {
			if (!drop) {	/* the batch's reference */
				__xa_set_mark(&rg->pages, idx, CAIRN_RDONLY);
				get_page(entry);
			}
			pages[n++] = entry;
		}
		xa_unlock(&rg->pages);
		cond_resched();
		if (n < CAIRN_PAGE_BATCH && (idx + 1 < end || !n))
			continue;
		start = (loff_t)(rg->base_pgoff + first) << PAGE_SHIFT;
		len = (loff_t)(idx + 1 - first) << PAGE_SHIFT;
		unmap_mapping_range(rg->inode->i_mapping, start, len, 1);
		for (i = 0; i < n; i++) {
			lock_page(pages[i]);
			unlock_page(pages[i]);
		}
		unmap_mapping_range(rg->inode->i_mapping, start, len, 1);
		for (i = 0; i < n; i++)
			put_page(pages[i]);
		first = idx + 1;
		n = 0;
	}
	return 0;
}

static long s_srv_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct cairn_rgn *rg = filp->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case CAIRN_IOC_SERVE:
		return s_serve(rg, uarg);
	case CAIRN_IOC_FAIL:
		return s_fail(rg, uarg);
	case CAIRN_IOC_DROP:
	case CAIRN_IOC_PROTECT:
		return s_unmap(rg, uarg, cmd == CAIRN_IOC_DROP);
	default:
		return -ENOIOCTLCMD;
	}
}

/* The server is gone: every waiting and future fault on a hole is SIGBUS. */
static int s_srv_release(struct inode *inode, struct file *filp)
{
	struct cairn_rgn *rg = filp->private_data;

	spin_lock(&rg->lock);
	rg->dead = true;
	spin_unlock(&rg->lock);
	wake_up_all(&rg->fault_wq);
	kref_put(&rg->ref, s_region_free);
	return 0;
}

static const struct file_operations s_srv_fops = {
	.owner = THIS_MODULE, .release = s_srv_release, .llseek = noop_llseek,
	.read = s_read, .poll = s_poll,
	.unlocked_ioctl = s_srv_ioctl, .compat_ioctl = compat_ptr_ioctl,
};

/* A slot of f for rg, holding the reference rg was created with. */
static int s_slot_set(struct cairn_file *f, struct cairn_rgn *old, struct cairn_rgn *rg)
{
	int ret = -ENOSPC;
	unsigned int i;

	mutex_lock(&f->regions_lock);
	for (i = 0; i < CAIRN_REGION_MAX && ret; i++) {
		if (f->regions[i] == old) {
			f->regions[i] = rg;
			ret = 0;
		}
	}
	mutex_unlock(&f->regions_lock);
	return ret;
}

static int s_region_create(struct cairn_file *f, struct file *filp, void __user *arg)
{
	struct cairn_region req;
	struct cairn_rgn *rg;
	int fd, ret;

	if (copy_from_user(&req, arg, sizeof(req)))
		return -EFAULT;
	if (!req.size || req.size & ~PAGE_MASK || req.size > CAIRN_REGION_MAX_SIZE || req.flags ||
	    !req.timeout_ms || req.timeout_ms > CAIRN_TIMEOUT_MAX_MS || req.map_offset ||
	    req.reserved)
		return -EINVAL;
	rg = kzalloc(sizeof(*rg), GFP_KERNEL);
	if (!rg)
		return -ENOMEM;
	kref_init(&rg->ref);
	xa_init(&rg->pages);
	spin_lock_init(&rg->lock);
	INIT_LIST_HEAD(&rg->reqs);
	init_waitqueue_head(&rg->fault_wq);
	init_waitqueue_head(&rg->q.wq);
	rg->q.ops = &s_srv_queue;
	rg->inode = file_inode(filp);
	ihold(rg->inode);
	rg->npages = req.size >> PAGE_SHIFT;
	rg->timeout = msecs_to_jiffies(req.timeout_ms);
	rg->id = ida_alloc_range(&s_region_ida, 1, (1 << 20) - 1, GFP_KERNEL);
	rg->base_pgoff = (unsigned long)rg->id << (32 - PAGE_SHIFT);
	/* map_offset first: once the fd is installed nothing may fail */
	req.map_offset = (u64)rg->id << 32;
	ret = rg->id < 0 ? rg->id : copy_to_user(arg, &req, sizeof(req)) ?
	      -EFAULT : s_slot_set(f, NULL, rg);
	if (ret) {
		kref_put(&rg->ref, s_region_free);
		return ret;
	}
	kref_get(&rg->ref);		/* the server's, put by its release */
	fd = anon_inode_getfd("[cairn-region]", &s_srv_fops, rg, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		kref_put(&rg->ref, s_region_free);
		s_slot_set(f, rg, NULL);
		kref_put(&rg->ref, s_region_free);
	}
	return fd;
}

static long s_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct cairn_file *f = filp->private_data;
	void __user *uarg = (void __user *)arg;

	switch (cmd) {
	case CAIRN_IOC_VERSION:
		return put_user((__u32)CAIRN_API_VERSION, (__u32 __user *)uarg);
	case CAIRN_IOC_SUBSCRIBE:
	case CAIRN_IOC_UNSUBSCRIBE:
		return s_subscribe(f, uarg, cmd == CAIRN_IOC_SUBSCRIBE);
	case CAIRN_IOC_STATS:
		return s_stats(f, uarg);
	case CAIRN_IOC_REGION_CREATE:
		return s_region_create(f, filp, uarg);
	default:
		return -ENOIOCTLCMD;
	}
}

static int s_open(struct inode *inode, struct file *filp)
{
	struct cairn_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (f)
		f->ring = kvcalloc(CAIRN_QUEUE_LEN, sizeof(*f->ring), GFP_KERNEL);
	if (!f || !f->ring) {
		kfree(f);
		return -ENOMEM;
	}
	spin_lock_init(&f->lock);
	mutex_init(&f->regions_lock);
	init_waitqueue_head(&f->q.wq);
	f->q.ops = &s_ev_queue;
	f->pidns = get_pid_ns(task_active_pid_ns(current));
	filp->private_data = f;
	spin_lock(&s_readers_lock);
	list_add_tail_rcu(&f->node, &s_readers);
	spin_unlock(&s_readers_lock);
	return 0;
}

static int s_release(struct inode *inode, struct file *filp)
{
	struct cairn_file *f = filp->private_data;
	unsigned int i;

	spin_lock(&s_readers_lock);
	list_del_rcu(&f->node);
	spin_unlock(&s_readers_lock);
	synchronize_rcu();		/* no probe sees f any more */
	for (i = 0; i < f->nsubs; i++)
		put_pid(f->subs[i].pid);
	for (i = 0; i < CAIRN_REGION_MAX; i++)
		if (f->regions[i])
			kref_put(&f->regions[i]->ref, s_region_free);
	put_pid_ns(f->pidns);
	kvfree(f->ring);
	kfree(f);
	return 0;
}

static const struct file_operations s_fops = {
	.owner = THIS_MODULE, .open = s_open, .release = s_release, .llseek = noop_llseek,
	.read = s_read, .poll = s_poll, .mmap = s_mmap,
	.unlocked_ioctl = s_ioctl, .compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice s_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "cairn",
	.fops = &s_fops,
	.mode = 0600,
};

static void s_find_tp(struct tracepoint *tp, void *priv)
{
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(s_tps); i++)
		if (!strcmp(tp->name, s_tps[i].name))
			s_tps[i].tp = tp;
}

static void s_unregister_tps(unsigned int n)
{
	while (n--)
		tracepoint_probe_unregister(s_tps[n].tp, s_tps[n].probe, NULL);
	tracepoint_synchronize_unregister();
}

static int __init cairn_init(void)
{
	unsigned int i;
	int ret = 0;

	for_each_kernel_tracepoint(s_find_tp, NULL);
	for (i = 0; i < ARRAY_SIZE(s_tps); i++) {
		ret = s_tps[i].tp ? tracepoint_probe_register(s_tps[i].tp,
				s_tps[i].probe, NULL) : -ENOENT;
		if (ret) {
			pr_err("cairn: tracepoint %s: %d\n", s_tps[i].name, ret);
			break;
		}
	}
	if (!ret)
		ret = misc_register(&s_misc);
	if (ret)
		s_unregister_tps(i);	/* the first i are registered */
	return ret;
}

static void __exit cairn_exit(void)
{
	misc_deregister(&s_misc);
	s_unregister_tps(ARRAY_SIZE(s_tps));
}

module_init(cairn_init);
module_exit(cairn_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("The Cairn authors");
MODULE_DESCRIPTION("Cairn page-fault and process-event hooks (/dev/cairn)");
