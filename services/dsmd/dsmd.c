/* dsmd - distributed shared memory segments of a Cairn node, sequentially
 * consistent across the cluster (README.md).
 *
 * main() only builds the context and hands over to the shared skeleton;
 * the handlers and lifecycle are in dsmd-manager.c, the rest in the
 * modules dsmd.h lists.
 */
#include "dsmd.h"

int main(int argc, char **argv)
{
    dsmd_t ctx = { .listen_fd = -1 };
    int r = cairn_service_main(&dsmd_ops, &ctx, argc, argv);
    dsmd_done(&ctx);
    return r;
}
