/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * cairn.h - user-space API of /dev/cairn, Cairn's page-fault and process hooks
 *
 * Two independent hooks share one misc device:
 *
 * Process events. A /dev/cairn file is a reader: CAIRN_IOC_SUBSCRIBE adds a
 * pid (optionally with its descendants) or a cgroup v2 (with the cgroups
 * below it) to the reader's filter; read() then returns whole struct
 * cairn_event records (fork, exec, exit) and poll() says when one is
 * queued. The queue is bounded; a record that does not fit is dropped and
 * counted, and the count is reported in-band by a CAIRN_EV_OVERFLOW record
 * before the next delivered one, and by CAIRN_IOC_STATS. The traced task
 * never waits for a reader.
 *
 * Page faults. CAIRN_IOC_REGION_CREATE on a /dev/cairn file F creates a
 * region of missing pages and returns a new file descriptor S, the region's
 * server. mmap(MAP_SHARED) of F at cairn_region.map_offset maps the region;
 * a fault on a page the server has not provided queues a struct cairn_fault
 * on S (read()/poll() on S) and waits until the server answers with
 * CAIRN_IOC_SERVE (the page's bytes) or CAIRN_IOC_FAIL (the faulting
 * access gets SIGBUS). No answer within the region's deadline is SIGBUS;
 * once S is closed every fault on a missing page is SIGBUS at once. A page
 * served with CAIRN_SERVE_RDONLY faults again on its first write
 * (CAIRN_FAULT_WP) until the server upgrades it (CAIRN_IOC_SERVE with
 * CAIRN_SERVE_UPGRADE) or fails it; CAIRN_IOC_DROP makes pages missing again
 * and CAIRN_IOC_PROTECT (version 2) makes served pages read-only again, so a
 * write-invalidate DSM can run on a region.
 *
 * Every record and argument has a fixed size, is 64-bit clean (the same
 * layout for 32- and 64-bit callers) and carries user addresses only as
 * __u64. Reserved fields must be zero. CAIRN_IOC_VERSION returns the
 * module's CAIRN_API_VERSION. A version only adds ioctls: every layout and
 * meaning of an earlier version stays, so a caller checks that the version
 * is at least the one it needs. Version 2 added CAIRN_IOC_PROTECT.
 */
#ifndef _UAPI_LINUX_CAIRN_H
#define _UAPI_LINUX_CAIRN_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define CAIRN_API_VERSION	2
#define CAIRN_DEVICE		"/dev/cairn"

/* event types (struct cairn_event.type) */
#define CAIRN_EV_FORK		1	/* pid/tid: the child; ppid: the parent */
#define CAIRN_EV_EXEC		2	/* comm: the new program's name */
#define CAIRN_EV_EXIT		3	/* exit_code as wait(2) reports it */
#define CAIRN_EV_OVERFLOW	4	/* lost: records dropped before this one */

/* struct cairn_event.flags */
#define CAIRN_EVF_THREAD	(1U << 0) /* a thread, not a new process */

/* One process event; read() returns whole records only. */
struct cairn_event {
	__u32 type;		/* CAIRN_EV_* */
	__u32 flags;		/* CAIRN_EVF_* */
	__u32 pid;		/* thread group id (process id) */
	__u32 tid;		/* thread id */
	__u32 ppid;		/* parent's process id */
	__s32 exit_code;	/* CAIRN_EV_EXIT only, else 0 */
	__u64 cgroup_id;	/* the task's cgroup v2 id (inode number) */
	__u64 time_ns;		/* CLOCK_MONOTONIC at the event */
	__u64 lost;		/* CAIRN_EV_OVERFLOW only, else 0 */
	char comm[16];		/* task name, NUL-terminated */
};

/* struct cairn_subscribe.kind */
#define CAIRN_SUB_PID		1	/* id is a process id */
#define CAIRN_SUB_CGROUP	2	/* id is a cgroup v2 id (its inode number) */

/* struct cairn_subscribe.flags */
#define CAIRN_SUBF_TREE		(1U << 0) /* PID: its descendants too */

#define CAIRN_SUB_MAX		64	/* subscriptions per reader */
#define CAIRN_QUEUE_LEN		4096	/* records queued per reader */

struct cairn_subscribe {
	__u32 kind;		/* CAIRN_SUB_* */
	__u32 flags;		/* CAIRN_SUBF_* */
	__u64 id;		/* pid or cgroup id */
};

/* Counters of a reader (CAIRN_IOC_STATS). */
struct cairn_stats {
	__u64 delivered;	/* records copied to user space */
	__u64 lost;		/* records dropped because the queue was full */
	__u64 queued;		/* records waiting now */
	__u64 reserved;		/* zero */
};

/* struct cairn_region.flags: none defined yet, must be zero */
#define CAIRN_REGION_MAX_SIZE	(1ULL << 30)	/* bytes per region */
#define CAIRN_REGION_MAX	16		/* regions per /dev/cairn file */
#define CAIRN_TIMEOUT_MAX_MS	60000		/* the longest deadline */

struct cairn_region {
	__u64 size;		/* in: bytes, a multiple of the page size */
	__u32 timeout_ms;	/* in: fault deadline, 1..CAIRN_TIMEOUT_MAX_MS */
	__u32 flags;		/* in: zero */
	__u64 map_offset;	/* out: the mmap offset of the region on F */
	__u64 reserved;		/* zero */
};

/* struct cairn_fault.flags */
#define CAIRN_FAULT_WRITE	(1U << 0) /* the access was a write */
#define CAIRN_FAULT_WP		(1U << 1) /* write to a page served read-only */

/* One fault waiting for its page; read() on the server fd. */
struct cairn_fault {
	__u64 offset;		/* byte offset of the page in the region */
	__u64 addr;		/* faulting user address (informational) */
	__u32 flags;		/* CAIRN_FAULT_* */
	__u32 tid;		/* faulting thread */
};

/* struct cairn_serve.flags */
#define CAIRN_SERVE_RDONLY	(1U << 0) /* report the first write */
/* make a served page writable; src must be 0 */
#define CAIRN_SERVE_UPGRADE	(1U << 1)

/* "Here is the page" (server fd). */
struct cairn_serve {
	__u64 offset;		/* page-aligned byte offset in the region */
	__u64 src;		/* user address of one page of bytes */
	__u32 flags;		/* CAIRN_SERVE_* */
	__u32 reserved;		/* zero */
};

/* "Here is an error": the faults on the page get SIGBUS (server fd). */
struct cairn_fail {
	__u64 offset;		/* page-aligned byte offset in the region */
	__s32 error;		/* a negative errno, kept for CAIRN_IOC_STATS */
	__u32 reserved;		/* zero */
};

/*
 * A range of the region (server fd). CAIRN_IOC_DROP makes it missing again,
 * unmapping it. CAIRN_IOC_PROTECT makes its served pages read-only again,
 * as if served with CAIRN_SERVE_RDONLY: their next write is a CAIRN_FAULT_WP
 * fault (missing pages and failed ones are left as they are).
 */
struct cairn_drop {
	__u64 offset;		/* page-aligned byte offset */
	__u64 len;		/* page-aligned length */
};

#define CAIRN_IOC_MAGIC		0xCA

/* on /dev/cairn */
#define CAIRN_IOC_VERSION	_IOR(CAIRN_IOC_MAGIC, 0x00, __u32)
#define CAIRN_IOC_SUBSCRIBE	_IOW(CAIRN_IOC_MAGIC, 0x01, struct cairn_subscribe)
#define CAIRN_IOC_UNSUBSCRIBE	_IOW(CAIRN_IOC_MAGIC, 0x02, struct cairn_subscribe)
#define CAIRN_IOC_STATS		_IOR(CAIRN_IOC_MAGIC, 0x03, struct cairn_stats)
/* returns the server fd (O_CLOEXEC) */
#define CAIRN_IOC_REGION_CREATE	_IOWR(CAIRN_IOC_MAGIC, 0x04, struct cairn_region)

/* on a region's server fd */
#define CAIRN_IOC_SERVE		_IOW(CAIRN_IOC_MAGIC, 0x10, struct cairn_serve)
#define CAIRN_IOC_FAIL		_IOW(CAIRN_IOC_MAGIC, 0x11, struct cairn_fail)
#define CAIRN_IOC_DROP		_IOW(CAIRN_IOC_MAGIC, 0x12, struct cairn_drop)
/* version 2 */
#define CAIRN_IOC_PROTECT	_IOW(CAIRN_IOC_MAGIC, 0x13, struct cairn_drop)

#endif /* _UAPI_LINUX_CAIRN_H */
