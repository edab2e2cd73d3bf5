/* libFuzzer target: the granary.conf parser, fed arbitrary file contents. */
#include "config.h"

#include <fcntl.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (path[0] == '\0')
        snprintf(path, sizeof(path), "/tmp/granary-fuzz-config-%d.conf", (int)getpid());
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return 0;
    ssize_t w = write(fd, data, size);
    close(fd);
    if (w != (ssize_t)size)
        return 0;
    cfg c;
    cfg_init(&c);
    gr_error_t err = NULL;
    if (cfg_load_file(&c, path, &err) < 0 && gr_error_msg(err)[0] == '\0')
        abort(); /* every error must say something */
    gr_error_release(&err);
    cfg_release(&c);
    return 0;
}
