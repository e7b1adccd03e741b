/* probed - the load probes of a Cairn node and their openMosix-style
 * dissemination.
 *
 * main() only builds the context and hands over to the shared skeleton;
 * everything probed does is in probed-manager.c (lifecycle, handlers) and
 * the modules it wires: sampler.c and the probe-*.c files, gossip.c,
 * window.c.
 */
#include "probed.h"

int main(int argc, char **argv)
{
    probed_t ctx = { 0 };
    int r = cairn_service_main(&probed_ops, &ctx, argc, argv);
    probed_done(&ctx);
    return r;
}
