/* ghostd - checkpoint and restart of the processes of a Cairn node.
 *
 * main() only builds the context and hands over to the shared skeleton;
 * everything ghostd does is in ghostd-manager.c. The context is static: it
 * holds the output buffers of every running helper.
 */
#include "ghostd.h"

int main(int argc, char **argv)
{
    static ghostd_t ctx;
    int r = cairn_service_main(&ghostd_ops, &ctx, argc, argv);
    ghostd_done(&ctx);
    return r;
}
