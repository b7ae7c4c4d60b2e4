/* Minimal read-only ZIP reader for PyTorch checkpoints: parses the central
 * directory (including ZIP64 records and extra fields) of an in-memory
 * archive and exposes STORED members as zero-copy views into that buffer.
 * Sizes and offsets always come from the central directory, so archives
 * written with data descriptors (local sizes = 0) are fine. */
#ifndef BEE_FORMAT_ZIP_H
#define BEE_FORMAT_ZIP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char *name;           /* owned, NUL-terminated */
    uint16_t method;      /* 0 = stored; anything else is rejected on access */
    uint64_t size;        /* uncompressed size */
    uint64_t csize;       /* size of the member's bytes in the archive */
    uint64_t data_offset; /* archive offset of the member's first byte */
} bee_zip_entry;

typedef struct {
    const uint8_t *data; /* borrowed archive bytes */
    size_t size;
    const char *file;    /* borrowed; prefixes error messages */
    bee_zip_entry *entries;   /* central-directory order */
    bee_zip_entry **by_name;  /* sorted by name, for bee_zip_find */
    size_t count;
} bee_zip;

/* Parses the archive; data must outlive z. Fails on any structural error or
 * duplicate member names. */
int bee_zip_open(bee_zip *z, const void *data, size_t size, const char *file);
void bee_zip_close(bee_zip *z);
/* Entry with exactly this name, or NULL. */
const bee_zip_entry *bee_zip_find(const bee_zip *z, const char *name);
/* Bytes of a STORED member; fails (naming the member) when it is compressed. */
int bee_zip_member_data(const bee_zip *z, const bee_zip_entry *e, const uint8_t **data, size_t *size);

#endif
