#define _POSIX_C_SOURCE 200809L
#include "util/file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/error.h"

int bee_mmap_open(const char *path, bee_mmap *m) {
    m->data = NULL;
    m->size = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return bee_fail("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return bee_fail("%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            close(fd);
            return bee_fail("%s: mmap failed: %s", path, strerror(errno));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
    }
    close(fd);
    return 0;
}

void bee_mmap_close(bee_mmap *m) {
    if (m->data) munmap((void *)m->data, m->size);
    m->data = NULL;
    m->size = 0;
}

int bee_read_file(const char *path, char **buf, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return bee_fail("%s: cannot open: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *b = malloc(cap);
    for (;;) {
        if (!b) {
            fclose(f);
            return bee_fail("%s: out of memory", path);
        }
        n += fread(b + n, 1, cap - n - 1, f);
        if (n < cap - 1) break;
        cap *= 2;
        char *nb = realloc(b, cap);
        if (!nb) free(b);
        b = nb;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(b);
        return bee_fail("%s: read error", path);
    }
    b[n] = 0;
    *buf = b;
    if (len) *len = n;
    return 0;
}

struct bee_afile {
    int fd;
    uint64_t pos;
    char *path;
    char *tmp;
};

bee_afile *bee_afile_open(const char *path) {
    if (bee_mkdir_parent(path)) return NULL;
    bee_afile *f = calloc(1, sizeof *f);
    size_t n = strlen(path);
    if (f) f->fd = -1;
    if (!f || !(f->path = strdup(path)) || !(f->tmp = malloc(n + 16))) {
        bee_afile_abort(f);
        bee_fail("%s: out of memory", path);
        return NULL;
    }
    snprintf(f->tmp, n + 16, "%s.tmp.XXXXXX", path);
    f->fd = mkstemp(f->tmp);
    if (f->fd < 0) {
        bee_fail("%s: cannot create temp file: %s", path, strerror(errno));
        free(f->tmp);
        f->tmp = NULL;
        bee_afile_abort(f);
        return NULL;
    }
    fchmod(f->fd, 0644);
    return f;
}

/* Crash tests: BEE_CRASH_AFTER_BYTES=N kills the process with SIGKILL once an
 * atomic file has N bytes written, as kill -9 or a power cut in the middle of
 * a save would; the tests then check that the previous file is intact. */
static void crash_point(const bee_afile *f) {
    static long long limit = -2;
    if (limit == -2) {
        const char *e = getenv("BEE_CRASH_AFTER_BYTES");
        limit = e && *e ? atoll(e) : -1;
    }
    if (limit >= 0 && f->pos >= (uint64_t)limit) raise(SIGKILL);
}

int bee_afile_write(bee_afile *f, const void *data, size_t n) {
    const uint8_t *p = data;
    while (n > 0) {
        ssize_t w = write(f->fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return bee_fail("%s: write failed: %s", f->path, strerror(errno));
        p += w;
        n -= (size_t)w;
        f->pos += (uint64_t)w;
        crash_point(f);
    }
    return 0;
}

int bee_afile_pad(bee_afile *f, size_t align) {
    static const uint8_t zeros[64];
    while (f->pos % align) {
        size_t k = align - f->pos % align;
        if (k > sizeof zeros) k = sizeof zeros;
        if (bee_afile_write(f, zeros, k)) return -1;
    }
    return 0;
}

uint64_t bee_afile_tell(const bee_afile *f) { return f->pos; }

static void fsync_parent_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(copy);
}

int bee_afile_commit(bee_afile *f) {
    int rc = 0;
    if (fsync(f->fd) != 0) rc = bee_fail("%s: fsync failed: %s", f->path, strerror(errno));
    if (close(f->fd) != 0 && rc == 0) rc = bee_fail("%s: close failed: %s", f->path, strerror(errno));
    f->fd = -1;
    if (rc == 0 && rename(f->tmp, f->path) != 0)
        rc = bee_fail("%s: rename failed: %s", f->path, strerror(errno));
    if (rc == 0) {
        fsync_parent_dir(f->path);
        free(f->tmp);
        f->tmp = NULL;
    }
    bee_afile_abort(f);
    return rc;
}

void bee_afile_abort(bee_afile *f) {
    if (!f) return;
    if (f->fd >= 0) close(f->fd);
    if (f->tmp) unlink(f->tmp);
    free(f->tmp);
    free(f->path);
    free(f);
}

int bee_write_file_atomic(const char *path, const void *data, size_t n) {
    bee_afile *f = bee_afile_open(path);
    if (!f) return -1;
    if (bee_afile_write(f, data, n)) {
        bee_afile_abort(f);
        return -1;
    }
    return bee_afile_commit(f);
}

int bee_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int bee_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int bee_mkdir_p(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return bee_fail("%s: bad directory path", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return bee_fail("%s: cannot create directory: %s", buf, strerror(errno));
        buf[i] = c;
    }
    if (!bee_is_dir(path)) return bee_fail("%s: exists and is not a directory", path);
    return 0;
}

int bee_mkdir_parent(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path) return 0;
    char *dir = strndup(path, (size_t)(slash - path));
    if (!dir) return bee_fail("out of memory");
    int rc = bee_mkdir_p(dir);
    free(dir);
    return rc;
}
