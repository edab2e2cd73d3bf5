/* granary-http-bridge: the first process of an HTTP app's grain. It will serve
 * WebSession on fd 3 and translate to HTTP on loopback (issue 6); for now it
 * checks its arguments and says plainly that the translation is missing. */
#include "util.h"

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: granary-http-bridge PORT -- COMMAND [ARGS...]\n\n"
               "Runs COMMAND, an HTTP server on 127.0.0.1:PORT, and serves it to Granary\n"
               "as WebSession over Cap'n Proto on fd 3.\n");
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("granary-http-bridge %s\n", GRANARY_VERSION);
        return 0;
    }
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "granary-http-bridge: usage: granary-http-bridge PORT -- COMMAND...\n");
        return 2;
    }
    long port;
    _cleanup_error_ gr_error_t err = NULL;
    if (gr_parse_long(argv[1], 1, 65535, &port, &err) < 0) {
        fprintf(stderr, "granary-http-bridge: PORT: %s\n", gr_error_msg(err));
        return 2;
    }
    fprintf(stderr, "granary-http-bridge: WebSession translation is not built yet\n");
    return 1;
}
