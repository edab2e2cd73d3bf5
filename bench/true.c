/* The smallest grain program for bench/sandbox-start: exits at once, or with
 * an argument waits (for the memory measurement). Built static. */
#include <unistd.h>

int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        pause();
    return 0;
}
