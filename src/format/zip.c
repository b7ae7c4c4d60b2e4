#include "format/zip.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#define SIG_LOCAL 0x04034b50u
#define SIG_CENTRAL 0x02014b50u
#define SIG_EOCD 0x06054b50u
#define SIG_EOCD64 0x06064b50u
#define SIG_LOCATOR64 0x07064b50u
#define EOCD_SIZE 22u
#define EOCD64_SIZE 56u
#define LOCATOR64_SIZE 20u
#define CENTRAL_SIZE 46u
#define LOCAL_SIZE 30u
#define MAX_COMMENT 65535u

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

/* Where the central directory is, as found from the end records. */
typedef struct {
    uint64_t cd_offset, cd_size, n_entries;
    uint64_t cd_limit; /* the central directory must end at or before this offset */
} zip_directory;

/* The EOCD is the last "PK\5\6" whose comment reaches exactly the end of the file. */
static int zip_eocd_find(const bee_zip *z, size_t *pos) {
    if (z->size < EOCD_SIZE) return bee_fail("%s: not a zip file (only %zu bytes)", z->file, z->size);
    size_t last = z->size - EOCD_SIZE;
    size_t first = last > MAX_COMMENT ? last - MAX_COMMENT : 0;
    for (size_t p = last + 1; p-- > first;) {
        if (le32(z->data + p) == SIG_EOCD && p + EOCD_SIZE + le16(z->data + p + 20) == z->size) {
            *pos = p;
            return 0;
        }
    }
    return bee_fail("%s: zip end-of-central-directory record not found (not a zip file, or truncated)", z->file);
}

static int zip_eocd64_read(const bee_zip *z, size_t loc, zip_directory *d) {
    uint64_t off = le64(z->data + loc + 8);
    if (off > loc || loc - off < EOCD64_SIZE)
        return bee_fail("%s: zip64 end-of-central-directory offset %llu out of range (locator at %zu)", z->file,
                        (unsigned long long)off, loc);
    const uint8_t *r = z->data + off;
    if (le32(r) != SIG_EOCD64)
        return bee_fail("%s: bad zip64 end-of-central-directory signature at offset %llu", z->file,
                        (unsigned long long)off);
    d->n_entries = le64(r + 32);
    d->cd_size = le64(r + 40);
    d->cd_offset = le64(r + 48);
    d->cd_limit = off;
    return 0;
}

static int zip_directory_find(const bee_zip *z, zip_directory *d) {
    size_t pos = 0;
    if (zip_eocd_find(z, &pos)) return -1;
    const uint8_t *e = z->data + pos;
    if (le16(e + 4) != 0 || le16(e + 6) != 0)
        return bee_fail("%s: multi-disk zip archives are not supported", z->file);
    if (pos >= LOCATOR64_SIZE && le32(z->data + pos - LOCATOR64_SIZE) == SIG_LOCATOR64)
        return zip_eocd64_read(z, pos - LOCATOR64_SIZE, d);
    d->n_entries = le16(e + 10);
    d->cd_size = le32(e + 12);
    d->cd_offset = le32(e + 16);
    d->cd_limit = pos;
    return 0;
}

static int zip_directory_check(const bee_zip *z, const zip_directory *d) {
    if (d->cd_offset > d->cd_limit || d->cd_size > d->cd_limit - d->cd_offset)
        return bee_fail("%s: zip central directory (offset %llu, size %llu) lies outside the archive (limit %llu)",
                        z->file, (unsigned long long)d->cd_offset, (unsigned long long)d->cd_size,
                        (unsigned long long)d->cd_limit);
    if (d->n_entries > d->cd_size / CENTRAL_SIZE)
        return bee_fail("%s: zip central directory claims %llu entries but is only %llu bytes", z->file,
                        (unsigned long long)d->n_entries, (unsigned long long)d->cd_size);
    return 0;
}

/* Fields of a central-directory entry that may be overridden by ZIP64. */
typedef struct {
    uint64_t size, csize, local_offset;
} zip_sizes;

static int zip_extra_zip64(const bee_zip *z, size_t idx, const uint8_t *p, size_t n, zip_sizes *s) {
    uint64_t *fields[3] = {&s->size, &s->csize, &s->local_offset};
    size_t used = 0;
    for (int i = 0; i < 3; i++) {
        if (*fields[i] != 0xffffffffu) continue;
        if (n - used < 8) return bee_fail("%s: zip central directory entry %zu: zip64 extra field too short", z->file, idx);
        *fields[i] = le64(p + used);
        used += 8;
    }
    return 0;
}

static int zip_extra_parse(const bee_zip *z, size_t idx, const uint8_t *p, size_t n, zip_sizes *s) {
    while (n >= 4) {
        uint16_t id = le16(p), len = le16(p + 2);
        if (len > n - 4) return bee_fail("%s: zip central directory entry %zu: extra field overruns the entry", z->file, idx);
        if (id == 0x0001 && zip_extra_zip64(z, idx, p + 4, len, s)) return -1;
        p += 4 + (size_t)len;
        n -= 4 + (size_t)len;
    }
    return 0;
}

/* Resolves where the member's bytes start by reading its local header. */
static int zip_local_resolve(const bee_zip *z, size_t idx, uint64_t local, bee_zip_entry *e) {
    if (local > z->size || z->size - local < LOCAL_SIZE)
        return bee_fail("%s: zip central directory entry %zu ('%s') points past end of file (offset %llu, size %zu)",
                        z->file, idx, e->name, (unsigned long long)local, z->size);
    const uint8_t *h = z->data + local;
    if (le32(h) != SIG_LOCAL)
        return bee_fail("%s: zip member '%s': bad local header signature at offset %llu", z->file, e->name,
                        (unsigned long long)local);
    uint64_t start = local + LOCAL_SIZE + le16(h + 26) + le16(h + 28);
    if (start > z->size || e->csize > z->size - start)
        return bee_fail("%s: zip member '%s' (data offset %llu, size %llu) extends past end of file (size %zu)", z->file,
                        e->name, (unsigned long long)start, (unsigned long long)e->csize, z->size);
    e->data_offset = start;
    return 0;
}

static int zip_entry_parse(const bee_zip *z, size_t idx, const uint8_t *p, size_t avail, bee_zip_entry *e, size_t *used) {
    if (avail < CENTRAL_SIZE || le32(p) != SIG_CENTRAL)
        return bee_fail("%s: zip central directory entry %zu is corrupt (bad signature or truncated)", z->file, idx);
    size_t name_len = le16(p + 28), extra_len = le16(p + 30), comment_len = le16(p + 32);
    size_t total = CENTRAL_SIZE + name_len + extra_len + comment_len;
    if (total > avail) return bee_fail("%s: zip central directory entry %zu overruns the directory", z->file, idx);
    if (memchr(p + CENTRAL_SIZE, 0, name_len))
        return bee_fail("%s: zip central directory entry %zu: member name contains a NUL byte", z->file, idx);
    if (!(e->name = malloc(name_len + 1))) return bee_fail("%s: out of memory", z->file);
    memcpy(e->name, p + CENTRAL_SIZE, name_len);
    e->name[name_len] = 0;
    e->method = le16(p + 10);
    zip_sizes s = {le32(p + 24), le32(p + 20), le32(p + 42)};
    if (zip_extra_parse(z, idx, p + CENTRAL_SIZE + name_len, extra_len, &s)) return -1;
    e->size = s.size;
    e->csize = s.csize;
    *used = total;
    return zip_local_resolve(z, idx, s.local_offset, e);
}

static int zip_name_cmp(const void *a, const void *b) {
    const bee_zip_entry *x = *(const bee_zip_entry *const *)a, *y = *(const bee_zip_entry *const *)b;
    return strcmp(x->name, y->name);
}

static int zip_index_build(bee_zip *z) {
    if (!(z->by_name = malloc((z->count ? z->count : 1) * sizeof *z->by_name)))
        return bee_fail("%s: out of memory", z->file);
    for (size_t i = 0; i < z->count; i++) z->by_name[i] = &z->entries[i];
    qsort(z->by_name, z->count, sizeof *z->by_name, zip_name_cmp);
    for (size_t i = 1; i < z->count; i++)
        if (strcmp(z->by_name[i - 1]->name, z->by_name[i]->name) == 0)
            return bee_fail("%s: duplicate zip member '%s'", z->file, z->by_name[i]->name);
    return 0;
}

static int zip_entries_parse(bee_zip *z, const zip_directory *d) {
    size_t n = (size_t)d->n_entries;
    if (!(z->entries = calloc(n ? n : 1, sizeof *z->entries))) return bee_fail("%s: out of memory", z->file);
    const uint8_t *p = z->data + d->cd_offset;
    size_t left = (size_t)d->cd_size;
    for (size_t i = 0; i < n; i++) {
        size_t used = 0;
        z->count = i + 1; /* so bee_zip_close frees a partially parsed entry */
        if (zip_entry_parse(z, i, p, left, &z->entries[i], &used)) return -1;
        p += used;
        left -= used;
    }
    return zip_index_build(z);
}

int bee_zip_open(bee_zip *z, const void *data, size_t size, const char *file) {
    memset(z, 0, sizeof *z);
    z->data = data;
    z->size = data ? size : 0;
    z->file = file;
    zip_directory d = {0};
    if (zip_directory_find(z, &d) || zip_directory_check(z, &d) || zip_entries_parse(z, &d)) {
        bee_zip_close(z);
        return -1;
    }
    return 0;
}

void bee_zip_close(bee_zip *z) {
    if (!z) return;
    for (size_t i = 0; i < z->count; i++) free(z->entries[i].name);
    free(z->entries);
    free(z->by_name);
    z->entries = NULL;
    z->by_name = NULL;
    z->count = 0;
}

const bee_zip_entry *bee_zip_find(const bee_zip *z, const char *name) {
    bee_zip_entry key = {.name = (char *)name};
    const bee_zip_entry *kp = &key;
    bee_zip_entry **hit = bsearch(&kp, z->by_name, z->count, sizeof *z->by_name, zip_name_cmp);
    return hit ? *hit : NULL;
}

int bee_zip_member_data(const bee_zip *z, const bee_zip_entry *e, const uint8_t **data, size_t *size) {
    if (e->method != 0)
        return bee_fail("%s: zip member '%s' is compressed (method %u); only STORED members are supported", z->file,
                        e->name, (unsigned)e->method);
    if (e->csize != e->size)
        return bee_fail("%s: zip member '%s': stored size %llu differs from uncompressed size %llu", z->file, e->name,
                        (unsigned long long)e->csize, (unsigned long long)e->size);
    *data = z->data + e->data_offset;
    *size = (size_t)e->size;
    return 0;
}
