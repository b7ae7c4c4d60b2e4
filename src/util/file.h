/* File I/O wrappers: read-only mappings, whole-file reads, and atomic writes
 * (temp file + fsync + rename) so a crash never leaves a half-written file. */
#ifndef BEE_UTIL_FILE_H
#define BEE_UTIL_FILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const uint8_t *data; /* NULL for an empty file */
    size_t size;
} bee_mmap;

int bee_mmap_open(const char *path, bee_mmap *m);
void bee_mmap_close(bee_mmap *m);

/* Reads a whole file; *buf is NUL-terminated and must be free()d. */
int bee_read_file(const char *path, char **buf, size_t *len);

typedef struct bee_afile bee_afile;
bee_afile *bee_afile_open(const char *path);
int bee_afile_write(bee_afile *f, const void *data, size_t n);
/* Writes zero bytes until the file size is a multiple of align. */
int bee_afile_pad(bee_afile *f, size_t align);
uint64_t bee_afile_tell(const bee_afile *f);
/* fsync, rename over the target, fsync the directory; frees f. */
int bee_afile_commit(bee_afile *f);
/* Removes the temp file; frees f. Safe on NULL. */
void bee_afile_abort(bee_afile *f);

int bee_write_file_atomic(const char *path, const void *data, size_t n);
int bee_is_dir(const char *path);
int bee_file_exists(const char *path);
int bee_mkdir_p(const char *path);
/* Creates the folder that will hold `path` (no-op for a bare file name). */
int bee_mkdir_parent(const char *path);

#endif
