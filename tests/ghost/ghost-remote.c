/* ghost-remote - a ghostd request from another node, over CURVE, for the
 * tests of who may checkpoint and restart what (test-ghost-users.sh).
 *
 *   ghost-remote keygen FILE
 *       writes a new node keypair to FILE (0600) and prints its public key;
 *   ghost-remote CONFIG NODE KEYFILE USER checkpoint PID [DIR|-] [check]
 *   ghost-remote CONFIG NODE KEYFILE USER restart DIR [check]
 *       sends the request to node NODE's ghostd over tcp with the keypair
 *       in KEYFILE (a member node's, read as root), vouching for USER:
 *       "root", or UID:GID, which this program becomes after reading the
 *       key (libcairn's client vouches for its process's user,
 *       Header.user). Prints "ok" and the reply's pid and dir, or "error
 *       <code> <message>"; exits 0, 1 (an error reply) or 2 (a failure
 *       here).
 *
 * The CLI vouches for whoever runs it, and only root reads a node's key,
 * so the CLI's remote requests are root's; a request for a user from
 * another node comes from a daemon that vouches for them
 * (cairn_peers_call_as). This is the smallest client that plays that
 * daemon, through the one client path (cairn/client.h).
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cairn/client.h"
#include "cairn/description.h"
#include "cairn/security.h"
#include "ghostd.pb-c.h"

static int s_keygen(const char *path)
{
    cairn_keypair_t kp;
    cairn_error_t err;

    if (cairn_keypair_generate(&kp, &err) < 0 ||
        cairn_keypair_write(path, &kp, "ghost-remote test key", true, &err) < 0) {
        fprintf(stderr, "ghost-remote: %s\n", err.message);
        return 2;
    }
    printf("%s\n", kp.public_key);
    return 0;
}

/* Becomes user "UID:GID" for good; "root" stays. */
static int s_become(const char *user)
{
    unsigned uid, gid;

    if (strcmp(user, "root") == 0)
        return 0;
    if (sscanf(user, "%u:%u", &uid, &gid) != 2 || setgroups(0, NULL) < 0 ||
        setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        return -1;
    return 0;
}

/* A client of node's ghostd over tcp with CURVE, keys from keyfile. */
static cairn_client_t *s_client(const char *config, unsigned node, const char *keyfile,
                                cairn_error_t *err)
{
    cairn_description_t *d = NULL;
    cairn_client_t *c = NULL;
    cairn_keypair_t own;
    const cairn_node_desc_t *n;
    const cairn_key_desc_t *k;
    char *endpoint = NULL;

    if (cairn_description_load(config, &d, err) < 0 ||
        cairn_keypair_read(keyfile, &own, err) < 0)
        goto out;
    n = cairn_description_find_node(d, node);
    k = cairn_description_find_key(d, node);
    endpoint = n ? cairn_description_tcp_endpoint(d, n, "ghostd", false) : NULL;
    if (!endpoint || !k) {
        cairn_error_set(err, -ENOENT, CAIRN_INVALID_ARGUMENT, "node %u: no ghostd or key",
                        node);
        goto out;
    }
    c = cairn_client_new(endpoint, "ghostd");
    if (c && cairn_client_set_curve(c, k->public_key, &own, err) < 0)
        c = cairn_client_free(c);
    if (c) {
        cairn_client_set_source_node(c, 0);
        cairn_client_set_timeout(c, 30000);
        cairn_client_set_retries(c, 0);
    }
out:
    free(endpoint);
    cairn_description_free(d);
    return c;
}

/* The request of argv (verb and its arguments) into req; storage in cr/rr. */
static int s_request(int argc, char **argv, Cairn__Ghostd__Request *req,
                     Cairn__Ghostd__CheckpointRequest *cr, Cairn__Ghostd__RestartRequest *rr)
{
    bool check = strcmp(argv[argc - 1], "check") == 0;

    if (argc >= 2 && strcmp(argv[0], "checkpoint") == 0) {
        cr->pid = (uint32_t)strtoul(argv[1], NULL, 10);
        cr->dir = argc > 2 && strcmp(argv[2], "-") != 0 && strcmp(argv[2], "check") != 0
                      ? argv[2] : "";
        cr->check_only = check;
        cr->leave_running = true;
        req->msg_case = CAIRN__GHOSTD__REQUEST__MSG_CHECKPOINT;
        req->checkpoint = cr;
        return 0;
    }
    if (argc >= 2 && strcmp(argv[0], "restart") == 0) {
        rr->dir = argv[1];
        rr->check_only = check;
        rr->new_pid = !check;
        req->msg_case = CAIRN__GHOSTD__REQUEST__MSG_RESTART;
        req->restart = rr;
        return 0;
    }
    return -1;
}

static void s_print(const Cairn__Ghostd__Reply *r)
{
    if (r->msg_case == CAIRN__GHOSTD__REPLY__MSG_CHECKPOINT_REPLY)
        printf("ok pid=%u dir=%s\n", r->checkpoint_reply->pid, r->checkpoint_reply->dir);
    else if (r->msg_case == CAIRN__GHOSTD__REPLY__MSG_RESTART_REPLY)
        printf("ok pid=%u\n", r->restart_reply->pid);
    else
        printf("ok\n");
}

int main(int argc, char **argv)
{
    Cairn__Ghostd__Request req = CAIRN__GHOSTD__REQUEST__INIT;
    Cairn__Ghostd__CheckpointRequest cr = CAIRN__GHOSTD__CHECKPOINT_REQUEST__INIT;
    Cairn__Ghostd__RestartRequest rr = CAIRN__GHOSTD__RESTART_REQUEST__INIT;
    ProtobufCMessage *reply = NULL;
    cairn_error_t err;

    if (argc == 3 && strcmp(argv[1], "keygen") == 0)
        return s_keygen(argv[2]);
    if (argc < 7 || s_request(argc - 5, argv + 5, &req, &cr, &rr) < 0) {
        fprintf(stderr, "usage: ghost-remote keygen FILE | ghost-remote CONFIG NODE "
                        "KEYFILE root|UID:GID checkpoint PID [DIR|-] [check] | ... "
                        "restart DIR [check]\n");
        return 2;
    }
    cairn_client_t *c = s_client(argv[1], (unsigned)strtoul(argv[2], NULL, 10), argv[3], &err);
    if (!c) {
        fprintf(stderr, "ghost-remote: %s\n", err.message);
        return 2;
    }
    if (s_become(argv[4]) < 0) {
        fprintf(stderr, "ghost-remote: cannot become %s: %s\n", argv[4], strerror(errno));
        cairn_client_free(c);
        return 2;
    }
    int r = cairn_client_call(c, &req.base, &cairn__ghostd__reply__descriptor, &reply, &err);
    cairn_client_free(c);
    if (r < 0) {
        printf("error %s %s\n", cairn_code_name(err.code), err.message);
        return 1;
    }
    s_print((const Cairn__Ghostd__Reply *)reply);
    protobuf_c_message_free_unpacked(reply, NULL);
    return 0;
}
