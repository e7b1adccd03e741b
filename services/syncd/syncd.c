/* syncd - cluster-wide locks, rwlocks, semaphores, barriers and condition
 * variables of a Cairn node.
 *
 * main() only builds the context and hands over to the shared skeleton;
 * everything syncd does is in syncd-manager.c (the handler table) and the
 * modules it wires: relay.c, home.c, view.c, cache.c.
 */
#include "syncd.h"

int main(int argc, char **argv)
{
    syncd_t ctx = { 0 };
    int r = cairn_service_main(&syncd_ops, &ctx, argc, argv);
    syncd_done(&ctx);
    return r;
}
