/*
 * The no-op run from every pulled image by the `kubelet` strategy.
 *
 *   quayctl-noop                 exit 0 at once (the image is on the node by then: the kubelet pulled it)
 *   quayctl-noop --install DEST  copy this binary to DEST (an emptyDir) and make it executable; the
 *                                init container does this from the helper image, which has no shell
 *
 * C, not Rust, so that one source builds for every architecture a cluster's nodes have with the
 * compilers Debian ships (gcc, gcc-aarch64-linux-gnu), static, for distroless and scratch images:
 * the helper image is an index of one no-op per architecture (README "Mixed architectures").
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail(const char *dest, const char *what) {
    fprintf(stderr, "quayctl-noop: cannot install to %s: %s: %s\n", dest, what, strerror(errno));
    return 1;
}

/* Copy /proc/self/exe to dest, mode 0755. */
static int install(const char *dest) {
    char buf[65536];
    ssize_t n;
    int in = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (in < 0) return fail(dest, "open /proc/self/exe");
    int out = open(dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    if (out < 0) return fail(dest, "open");
    while ((n = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t done = 0; done < n;) {
            ssize_t w = write(out, buf + done, (size_t)(n - done));
            if (w < 0) {
                if (errno == EINTR) continue;
                return fail(dest, "write");
            }
            done += w;
        }
    }
    if (n < 0) return fail(dest, "read");
    if (fchmod(out, 0755) < 0) return fail(dest, "chmod");
    if (close(out) < 0) return fail(dest, "close");
    close(in);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 1) return 0;
    if (argc == 3 && strcmp(argv[1], "--install") == 0) return install(argv[2]);
    fprintf(stderr, "usage: quayctl-noop [--install DEST]\n");
    return 2;
}
