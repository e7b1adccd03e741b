/* clusterd - membership and the node directory of a Cairn node.
 *
 * main() only builds the context and hands over to the shared skeleton;
 * everything clusterd does is in clusterd-manager.c and membership.c.
 */
#include "clusterd.h"

int main(int argc, char **argv)
{
    clusterd_t ctx = { 0 };
    int r = cairn_service_main(&clusterd_ops, &ctx, argc, argv);
    clusterd_done(&ctx);
    return r;
}
