/* Index database: files, passages and the FTS5 table, kept in step
 * transactionally; queries ranked by BM25. */
#include "search/search.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "search/tokenize.h"
#include "util/buf.h"
#include "util/error.h"

#ifdef BEE_HAVE_SQLITE

#include <dirent.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/file.h"

struct bee_search {
    sqlite3 *db;
    char *path;
    sqlite3_stmt *get_file, *put_file, *touch_file, *del_fts, *del_pass, *put_pass, *put_fts, *put_seen;
    double k1, b;          /* BM25 term-frequency saturation and length normalisation */
    double ctx_weight;     /* BM25 weight of the context column (headings) against 1 for the text */
    int prf_docs, prf_terms; /* pseudo-relevance feedback: expand from the top prf_docs passages with prf_terms terms (0: off) */
    int in_batch;          /* a write transaction is open */
    uint64_t batch_bytes;  /* bytes of files written in it */
    uint64_t batch_files;
};

/* Indexing writes files in batches: one transaction per BATCH_BYTES of input
 * or BATCH_FILES files (one commit and WAL sync per batch instead of per
 * file: many small files no longer cost a commit each). FTS5 keeps its
 * default 1 MB term hash: larger ones (8, 128 MB) measured slower, their
 * hash chains miss the CPU caches on every token. */
#define BEE_SEARCH_BATCH_BYTES (32u << 20)
#define BEE_SEARCH_BATCH_FILES 2000

/* Bump when the tokenizer or splitter changes: an index built with another
 * version must be rebuilt, since stored tokens would no longer match queries. */
#define BEE_SEARCH_SCHEMA "bee-search-3" /* 2: CJK bigrams + last character instead of every character + colocated bigrams;
                                           3: a second FTS column, context (the passage's heading / record title) */

static const char k_schema[] =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS files("
    " id INTEGER PRIMARY KEY,"
    " path TEXT UNIQUE NOT NULL,"  /* absolute */
    " size INTEGER NOT NULL,"
    " mtime INTEGER NOT NULL,"     /* nanoseconds */
    " hash TEXT NOT NULL);"        /* FNV-1a 64 of the content, hex */
    "CREATE TABLE IF NOT EXISTS passages("
    " id INTEGER PRIMARY KEY,"     /* = rowid in fts */
    " file_id INTEGER NOT NULL REFERENCES files(id),"
    " doc TEXT,"                   /* NULL: the file path; else path#record */
    " seq INTEGER NOT NULL,"
    " offset INTEGER NOT NULL,"
    " heading TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS passages_file ON passages(file_id);"
    "CREATE VIRTUAL TABLE IF NOT EXISTS fts USING fts5(text, context, tokenize='bee');"
    "CREATE TEMP TABLE IF NOT EXISTS seen(path TEXT PRIMARY KEY);";

static int db_fail(bee_search *s, const char *what) {
    return bee_fail("%s: %s: %s", s->path, what, s->db ? sqlite3_errmsg(s->db) : "out of memory");
}

/* ================================================================ FTS5 tokenizer glue */

typedef struct {
    void *ctx;
    int (*token)(void *, int, const char *, int, int, int);
} fts_sink;

static int fts_emit(void *user, const char *tok, size_t n, size_t start, size_t end, int colocated) {
    fts_sink *k = user;
    return k->token(k->ctx, colocated ? FTS5_TOKEN_COLOCATED : 0, tok, (int)n, (int)start, (int)end);
}

static int fts_create(void *ctx, const char **argv, int argc, Fts5Tokenizer **out) {
    static int dummy;
    *out = (Fts5Tokenizer *)&dummy; /* stateless */
    return SQLITE_OK;
}

static void fts_delete(Fts5Tokenizer *t) {}

static int fts_tokenize(Fts5Tokenizer *t, void *ctx, int flags, const char *text, int n,
                        int (*token)(void *, int, const char *, int, int, int)) {
    fts_sink k = {ctx, token};
    bee_stok_mode mode = (flags & FTS5_TOKENIZE_QUERY) ? BEE_STOK_QUERY : BEE_STOK_DOCUMENT;
    return bee_search_tokenize(text, n > 0 ? (size_t)n : 0, mode, fts_emit, &k);
}

/* ---------------------------------------------------------------- ranking
 * beerank(k1, b, w_text, w_context): FTS5's bm25() (same IDF, same
 * length normalisation over all columns, column weights multiplying the
 * hit counts) with k1 and b as arguments instead of its fixed 1.2 and 0.75. */
typedef struct {
    int n_phrase;
    double avgdl;
    double *idf, *freq;
} rank_data;

static int count_cb(const Fts5ExtensionApi *api, Fts5Context *fts, void *user) {
    (void)api, (void)fts;
    (*(sqlite3_int64 *)user)++;
    return SQLITE_OK;
}

static int rank_data_get(const Fts5ExtensionApi *api, Fts5Context *fts, rank_data **out) {
    rank_data *p = api->xGetAuxdata(fts, 0);
    if (p) {
        *out = p;
        return SQLITE_OK;
    }
    int np = api->xPhraseCount(fts);
    p = sqlite3_malloc64(sizeof *p + (size_t)np * 2 * sizeof(double));
    if (!p) return SQLITE_NOMEM;
    p->n_phrase = np;
    p->idf = (double *)&p[1];
    p->freq = p->idf + np;
    sqlite3_int64 rows = 0, toks = 0;
    int rc = api->xRowCount(fts, &rows);
    if (rc == SQLITE_OK) rc = api->xColumnTotalSize(fts, -1, &toks);
    p->avgdl = rows > 0 ? (double)toks / (double)rows : 1;
    for (int i = 0; rc == SQLITE_OK && i < np; i++) {
        sqlite3_int64 hits = 0;
        rc = api->xQueryPhrase(fts, i, &hits, count_cb);
        double idf = log(((double)rows - (double)hits + 0.5) / ((double)hits + 0.5));
        p->idf[i] = idf > 0 ? idf : 1e-6;
    }
    if (rc == SQLITE_OK) rc = api->xSetAuxdata(fts, p, sqlite3_free);
    else sqlite3_free(p);
    if (rc == SQLITE_OK) *out = p;
    return rc;
}

static void rank_fn(const Fts5ExtensionApi *api, Fts5Context *fts, sqlite3_context *ctx, int nv, sqlite3_value **v) {
    double k1 = nv > 0 ? sqlite3_value_double(v[0]) : 1.2, b = nv > 1 ? sqlite3_value_double(v[1]) : 0.75;
    rank_data *p;
    int rc = rank_data_get(api, fts, &p), n_inst = 0;
    if (rc == SQLITE_OK) {
        memset(p->freq, 0, (size_t)p->n_phrase * sizeof(double));
        rc = api->xInstCount(fts, &n_inst);
    }
    for (int i = 0; rc == SQLITE_OK && i < n_inst; i++) {
        int ip, ic, io;
        rc = api->xInst(fts, i, &ip, &ic, &io);
        if (rc == SQLITE_OK && ip >= 0 && ip < p->n_phrase) p->freq[ip] += nv > 2 + ic ? sqlite3_value_double(v[2 + ic]) : 1.0;
    }
    int len = 0;
    if (rc == SQLITE_OK) rc = api->xColumnSize(fts, -1, &len);
    if (rc != SQLITE_OK) {
        sqlite3_result_error_code(ctx, rc);
        return;
    }
    double score = 0, norm = k1 * (1 - b + b * (double)len / p->avgdl);
    for (int i = 0; i < p->n_phrase; i++) score += p->idf[i] * p->freq[i] * (k1 + 1) / (p->freq[i] + norm);
    sqlite3_result_double(ctx, -score);
}

static int register_tokenizer(bee_search *s) {
    fts5_api *api = NULL;
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT fts5(?1)", -1, &st, NULL) != SQLITE_OK)
        return bee_fail("%s: this SQLite has no FTS5: %s", s->path, sqlite3_errmsg(s->db));
    sqlite3_bind_pointer(st, 1, &api, "fts5_api_ptr", NULL);
    sqlite3_step(st);
    sqlite3_finalize(st);
    if (!api) return bee_fail("%s: this SQLite has no FTS5", s->path);
    fts5_tokenizer tk = {fts_create, fts_delete, fts_tokenize};
    if (api->xCreateTokenizer(api, "bee", NULL, &tk, NULL) != SQLITE_OK) return db_fail(s, "register tokenizer");
    if (api->xCreateFunction(api, "beerank", NULL, rank_fn, NULL) != SQLITE_OK) return db_fail(s, "register beerank");
    return 0;
}

/* ================================================================ open / close */

static int check_version(bee_search *s) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key='schema'", -1, &st, NULL) != SQLITE_OK)
        return db_fail(s, "meta");
    int rc = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        if (!v || strcmp(v, BEE_SEARCH_SCHEMA) != 0)
            rc = bee_fail("%s: index version '%s', this bee writes '%s': delete it and index again", s->path,
                          v ? v : "", BEE_SEARCH_SCHEMA);
    } else if (sqlite3_exec(s->db, "INSERT INTO meta VALUES('schema','" BEE_SEARCH_SCHEMA "')", NULL, NULL, NULL))
        rc = db_fail(s, "meta");
    sqlite3_finalize(st);
    return rc;
}

static int prepare_all(bee_search *s) {
    static const char *k_sql[] = {
        "SELECT id, size, mtime, hash FROM files WHERE path=?1",
        ("INSERT INTO files(path, size, mtime, hash) VALUES(?1,?2,?3,?4) ON CONFLICT(path) DO UPDATE SET "
         "size=excluded.size, mtime=excluded.mtime, hash=excluded.hash RETURNING id"),
        "UPDATE files SET size=?2, mtime=?3 WHERE id=?1",
        "DELETE FROM fts WHERE rowid IN (SELECT id FROM passages WHERE file_id=?1)",
        "DELETE FROM passages WHERE file_id=?1",
        "INSERT INTO passages(file_id, doc, seq, offset, heading) VALUES(?1,?2,?3,?4,?5)",
        "INSERT INTO fts(rowid, text, context) VALUES(?1,?2,?3)",
        "INSERT OR IGNORE INTO seen(path) VALUES(?1)",
    };
    sqlite3_stmt **dst[] = {&s->get_file, &s->put_file, &s->touch_file, &s->del_fts,
                            &s->del_pass, &s->put_pass, &s->put_fts,    &s->put_seen};
    for (size_t i = 0; i < sizeof k_sql / sizeof k_sql[0]; i++)
        if (sqlite3_prepare_v3(s->db, k_sql[i], -1, SQLITE_PREPARE_PERSISTENT, dst[i], NULL) != SQLITE_OK)
            return db_fail(s, "prepare");
    return 0;
}

void bee_search_close(bee_search *s) {
    if (!s) return;
    sqlite3_stmt *all[] = {s->get_file, s->put_file, s->touch_file, s->del_fts,
                           s->del_pass, s->put_pass, s->put_fts,    s->put_seen};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sqlite3_finalize(all[i]);
    sqlite3_close(s->db);
    free(s->path);
    free(s);
}

int bee_search_open(const char *path, bee_search **out) {
    *out = NULL;
    bee_search *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(path))) {
        free(s);
        return bee_fail("%s: out of memory", path);
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) != SQLITE_OK) {
        db_fail(s, "cannot open");
        bee_search_close(s);
        return -1;
    }
    sqlite3_busy_timeout(s->db, 5000);
    /* 16 KiB pages (only takes effect when the file is new): FTS5 segments
     * are blobs, and bigger pages mean fewer overflow pages to chain. */
    if (register_tokenizer(s) || sqlite3_exec(s->db, "PRAGMA page_size=16384", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_exec(s->db, k_schema, NULL, NULL, NULL) != SQLITE_OK || check_version(s) || prepare_all(s)) {
        if (!strstr(bee_error_message(), s->path)) db_fail(s, "cannot open");
        bee_search_close(s);
        return -1;
    }
    s->ctx_weight = BEE_SEARCH_CONTEXT_WEIGHT;
    s->k1 = BEE_SEARCH_K1;
    s->b = BEE_SEARCH_B;
    s->prf_docs = BEE_SEARCH_PRF_DOCS;
    s->prf_terms = BEE_SEARCH_PRF_TERMS;
    *out = s;
    return 0;
}

/* ================================================================ indexing one file */

static void hash_hex(const char *d, size_t n, char out[17]) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)d[i]) * 0x100000001b3ULL;
    static const char k_hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, h >>= 4) out[i] = k_hex[h & 15];
    out[16] = 0;
}

static int step_done(bee_search *s, sqlite3_stmt *st, const char *what) {
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : db_fail(s, what);
}

/* ---------------------------------------------------------------- parsing (no SQL) */

/* A file parsed into documents before anything is written, so a bad file
 * fails before it touches the index. */
typedef struct {
    char *doc; /* NULL: the file itself; else path#record */
    bee_doc d;
} parsed_doc;

typedef struct {
    parsed_doc *v;
    size_t n, cap;
} parsed_file;

static void parsed_free(parsed_file *f) {
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].doc);
        bee_doc_free(&f->v[i].d);
    }
    free(f->v);
    memset(f, 0, sizeof *f);
}

/* Splits one text into passages and keeps it (text and doc are taken over, also on failure). */
static int parsed_add(parsed_file *f, char *doc, char *text, size_t len, int md) {
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 8;
        parsed_doc *v = realloc(f->v, cap * sizeof *v);
        if (!v) {
            free(doc), free(text);
            return bee_fail("out of memory");
        }
        f->v = v, f->cap = cap;
    }
    parsed_doc *p = &f->v[f->n++];
    p->doc = doc;
    p->d = (bee_doc){text, len, NULL, 0, 0};
    return bee_doc_split(&p->d, md);
}

static int parse_jsonl(parsed_file *f, const char *path, const char *data, size_t n) {
    size_t line = 0;
    for (size_t i = 0; i < n; line++) {
        const char *nl = memchr(data + i, '\n', n - i);
        size_t e = nl ? (size_t)(nl - data) : n, b = i;
        i = e + 1;
        while (b < e && (data[b] == ' ' || data[b] == '\t' || data[b] == '\r')) b++;
        if (b == e) continue;
        json_error_t err;
        json_t *o = json_loadb(data + b, e - b, 0, &err);
        json_t *t = json_object_get(o, "text"), *id = json_object_get(o, "id");
        if (!json_is_string(t)) {
            json_decref(o);
            return bee_fail("%s:%zu: %s", path, line + 1, o ? "expected an object with a string field \"text\"" : err.text);
        }
        char doc[PATH_MAX + 128];
        if (json_is_string(id)) snprintf(doc, sizeof doc, "%s#%s", path, json_string_value(id));
        else if (json_is_integer(id)) snprintf(doc, sizeof doc, "%s#%lld", path, (long long)json_integer_value(id));
        else snprintf(doc, sizeof doc, "%s#%zu", path, line + 1);
        json_t *ti = json_object_get(o, "title");
        if (ti && !json_is_string(ti)) {
            json_decref(o);
            return bee_fail("%s:%zu: \"title\" must be a string", path, line + 1);
        }
        char *text = strndup(json_string_value(t), json_string_length(t)), *d = strdup(doc);
        char *title = ti ? strndup(json_string_value(ti), json_string_length(ti)) : NULL;
        json_decref(o);
        if (!text || !d || (ti && !title)) {
            free(text), free(d), free(title);
            return bee_fail("out of memory");
        }
        if (parsed_add(f, d, text, strlen(text), 0)) {
            free(title);
            return -1;
        }
        /* the record's title is the heading (context column) of all its passages */
        bee_doc *pd = &f->v[f->n - 1].d;
        for (size_t j = 0; title && title[0] && j < pd->n; j++) {
            char *h = strdup(title);
            if (!h) {
                free(title);
                return bee_fail("out of memory");
            }
            free(pd->p[j].heading);
            pd->p[j].heading = h;
        }
        free(title);
    }
    return 0;
}

typedef enum { DOC_NONE, DOC_TEXT, DOC_MD, DOC_HTML, DOC_JSONL } doc_kind;

static doc_kind kind_of(const char *path) {
    const char *dot = strrchr(path, '.');
    if (!dot || strchr(dot, '/')) return DOC_NONE;
    if (!strcasecmp(dot, ".txt")) return DOC_TEXT;
    if (!strcasecmp(dot, ".md") || !strcasecmp(dot, ".markdown")) return DOC_MD;
    if (!strcasecmp(dot, ".html") || !strcasecmp(dot, ".htm")) return DOC_HTML;
    if (!strcasecmp(dot, ".jsonl")) return DOC_JSONL;
    return DOC_NONE;
}

static int parse_content(parsed_file *f, const char *path, doc_kind k, const char *data, size_t n) {
    if (k == DOC_JSONL) return parse_jsonl(f, path, data, n);
    size_t len = n;
    char *text = k == DOC_HTML ? bee_html_to_text(data, n, &len) : strndup(data, n);
    if (!text) return bee_fail("out of memory");
    return parsed_add(f, NULL, text, len, k != DOC_TEXT);
}

/* ---------------------------------------------------------------- batches */

static int exec(bee_search *s, const char *sql) {
    return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : db_fail(s, sql);
}

static int batch_begin(bee_search *s) {
    if (s->in_batch) return 0;
    if (exec(s, "BEGIN IMMEDIATE")) return -1;
    s->in_batch = 1;
    s->batch_bytes = s->batch_files = 0;
    return 0;
}

static void batch_rollback(bee_search *s) {
    if (s->in_batch) sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
    s->in_batch = 0;
}

static int batch_commit(bee_search *s) {
    if (!s->in_batch) return 0;
    if (exec(s, "COMMIT")) {
        batch_rollback(s);
        return -1;
    }
    s->in_batch = 0;
    return 0;
}

/* Commits when the batch is full. */
static int batch_step(bee_search *s, uint64_t bytes) {
    s->batch_bytes += bytes;
    s->batch_files++;
    return s->batch_bytes >= BEE_SEARCH_BATCH_BYTES || s->batch_files >= BEE_SEARCH_BATCH_FILES ? batch_commit(s) : 0;
}

/* ---------------------------------------------------------------- writing */

static int store_passages(bee_search *s, int64_t file_id, const char *doc, const bee_doc *d, int64_t *seq) {
    for (size_t i = 0; i < d->n; i++) {
        const bee_passage *p = &d->p[i];
        sqlite3_bind_int64(s->put_pass, 1, file_id);
        if (doc) sqlite3_bind_text(s->put_pass, 2, doc, -1, SQLITE_STATIC);
        else sqlite3_bind_null(s->put_pass, 2);
        sqlite3_bind_int64(s->put_pass, 3, (*seq)++);
        sqlite3_bind_int64(s->put_pass, 4, p->offset);
        sqlite3_bind_text(s->put_pass, 5, p->heading, -1, SQLITE_STATIC);
        if (step_done(s, s->put_pass, "insert passage")) return -1;
        sqlite3_bind_int64(s->put_fts, 1, sqlite3_last_insert_rowid(s->db));
        sqlite3_bind_text(s->put_fts, 2, d->text + p->offset, (int)p->len, SQLITE_STATIC);
        sqlite3_bind_text(s->put_fts, 3, p->heading, -1, SQLITE_STATIC);
        if (step_done(s, s->put_fts, "insert fts")) return -1;
    }
    return 0;
}

static int64_t mtime_ns(const struct stat *sb) { return (int64_t)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec; }

static int delete_file_rows(bee_search *s, int64_t id) {
    sqlite3_bind_int64(s->del_fts, 1, id);
    sqlite3_bind_int64(s->del_pass, 1, id);
    return step_done(s, s->del_fts, "delete fts") || step_done(s, s->del_pass, "delete passages") ? -1 : 0;
}

/* Re-indexes path in the current batch: parsed first (a bad file fails
 * here: the batch so far is committed, nothing of this file is written),
 * then old passages out and new ones in. A database error rolls the whole
 * batch back; either way the index holds, for each file, its previous or
 * its new version, never a mix. */
static int write_file(bee_search *s, const char *path, doc_kind k, const struct stat *sb, const char *data,
                      const char *hash, int64_t old_id, bee_index_stats *st) {
    parsed_file f = {0};
    if (parse_content(&f, path, k, data, (size_t)sb->st_size)) {
        parsed_free(&f);
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", bee_error_message());
        if (batch_commit(s)) return -1;
        return bee_fail("%s", msg);
    }
    int64_t seq = 0, id = -1;
    int rc = batch_begin(s);
    if (rc == 0 && old_id >= 0) rc = delete_file_rows(s, old_id);
    if (rc == 0) {
        sqlite3_bind_text(s->put_file, 1, path, -1, SQLITE_STATIC);
        sqlite3_bind_int64(s->put_file, 2, (int64_t)sb->st_size);
        sqlite3_bind_int64(s->put_file, 3, mtime_ns(sb));
        sqlite3_bind_text(s->put_file, 4, hash, -1, SQLITE_STATIC);
        if (sqlite3_step(s->put_file) == SQLITE_ROW) id = sqlite3_column_int64(s->put_file, 0);
        else rc = db_fail(s, "insert file");
        sqlite3_reset(s->put_file);
    }
    for (size_t i = 0; rc == 0 && i < f.n; i++) rc = store_passages(s, id, f.v[i].doc, &f.v[i].d, &seq);
    parsed_free(&f);
    if (rc == 0) rc = batch_step(s, (uint64_t)sb->st_size);
    if (rc) {
        batch_rollback(s);
        return -1;
    }
    st->passages += (uint64_t)seq;
    st->bytes += (uint64_t)sb->st_size;
    return 0;
}

static int index_file(bee_search *s, const char *path, bee_index_stats *st) {
    doc_kind k = kind_of(path);
    sqlite3_bind_text(s->put_seen, 1, path, -1, SQLITE_STATIC);
    if (step_done(s, s->put_seen, "seen")) return -1;
    if (k == DOC_NONE) {
        st->skipped++;
        return 0;
    }
    struct stat sb;
    if (stat(path, &sb)) return bee_fail("%s: cannot stat", path);
    int64_t old_id = -1, old_size = -1, old_mtime = -1;
    char old_hash[17] = "";
    sqlite3_bind_text(s->get_file, 1, path, -1, SQLITE_STATIC);
    if (sqlite3_step(s->get_file) == SQLITE_ROW) {
        old_id = sqlite3_column_int64(s->get_file, 0);
        old_size = sqlite3_column_int64(s->get_file, 1);
        old_mtime = sqlite3_column_int64(s->get_file, 2);
        snprintf(old_hash, sizeof old_hash, "%s", (const char *)sqlite3_column_text(s->get_file, 3));
    }
    sqlite3_reset(s->get_file);
    if (old_id >= 0 && old_size == (int64_t)sb.st_size && old_mtime == mtime_ns(&sb)) {
        st->unchanged++;
        return 0;
    }
    char *data;
    size_t n;
    if (bee_read_file(path, &data, &n)) return -1;
    sb.st_size = (off_t)n;
    char hash[17];
    hash_hex(data, n, hash);
    int rc = 0;
    if (old_id >= 0 && strcmp(hash, old_hash) == 0) {
        /* touched, not changed: remember the new mtime so the next run skips it without reading */
        sqlite3_bind_int64(s->touch_file, 1, old_id);
        sqlite3_bind_int64(s->touch_file, 2, (int64_t)n);
        sqlite3_bind_int64(s->touch_file, 3, mtime_ns(&sb));
        rc = batch_begin(s) || step_done(s, s->touch_file, "update file") || batch_step(s, 0) ? -1 : 0;
        if (rc) batch_rollback(s);
        st->unchanged++;
    } else {
        rc = write_file(s, path, k, &sb, data, hash, old_id, st);
        if (rc == 0 && old_id >= 0) st->updated++;
        else if (rc == 0) st->added++;
    }
    free(data);
    return rc;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Visits a folder in name order (so passage ids are reproducible); skips hidden entries. */
static int index_dir(bee_search *s, const char *dir, bee_index_stats *st, int depth) {
    if (depth > 64) return bee_fail("%s: folders nested too deeply", dir);
    DIR *d = opendir(dir);
    if (!d) return bee_fail("%s: cannot open folder", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) { rc = bee_fail("out of memory"); break; }
            names = nn;
        }
        if (!(names[n] = strdup(e->d_name))) rc = bee_fail("out of memory");
        else n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) {
        char p[PATH_MAX];
        struct stat sb;
        if (rc == 0 && (size_t)snprintf(p, sizeof p, "%s/%s", dir, names[i]) < sizeof p && lstat(p, &sb) == 0) {
            if (S_ISDIR(sb.st_mode)) rc = index_dir(s, p, st, depth + 1);
            else if (S_ISREG(sb.st_mode)) rc = index_file(s, p, st);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* Removes indexed files under dir (or equal to it) that this run did not see. */
static int remove_missing(bee_search *s, const char *root, bee_index_stats *st) {
    sqlite3_stmt *q;
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id FROM files WHERE (path=?1 OR (path>?1||'/' AND path<?1||'0')) "
                           "AND path NOT IN (SELECT path FROM seen)",
                           -1, &q, NULL) != SQLITE_OK)
        return db_fail(s, "prepare");
    sqlite3_bind_text(q, 1, root, -1, SQLITE_STATIC);
    int rc = batch_begin(s);
    while (rc == 0 && sqlite3_step(q) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(q, 0);
        char sql[64];
        snprintf(sql, sizeof sql, "DELETE FROM files WHERE id=%lld", (long long)id);
        rc = delete_file_rows(s, id) || exec(s, sql);
        if (rc == 0) st->removed++;
    }
    sqlite3_finalize(q);
    if (rc == 0) return 0; /* committed with the batch */
    batch_rollback(s);
    return -1;
}

/* Absolute form of a path that may no longer exist (its folder must). */
static int absolute(const char *in, char *out) {
    if (realpath(in, out)) return 0;
    char cwd[PATH_MAX];
    if (in[0] == '/') snprintf(out, PATH_MAX, "%s", in);
    else if (getcwd(cwd, sizeof cwd) && (size_t)snprintf(out, PATH_MAX, "%s/%s", cwd, in) < PATH_MAX) {}
    else return bee_fail("%s: path too long", in);
    return 1;
}

static int index_paths(bee_search *s, const char *const *paths, size_t n, bee_index_stats *st) {
    for (size_t i = 0; i < n; i++) {
        char abs[PATH_MAX];
        int r = absolute(paths[i], abs);
        if (r < 0) return -1;
        struct stat sb;
        if (r == 1 || stat(abs, &sb)) {
            /* gone from disk: drop it if it was indexed, else it is a typo */
            int64_t before = (int64_t)st->removed;
            if (remove_missing(s, abs, st)) return -1;
            if ((int64_t)st->removed == before) return bee_fail("%s: no such file or folder", paths[i]);
            continue;
        }
        int rc = S_ISDIR(sb.st_mode) ? index_dir(s, abs, st, 0) : index_file(s, abs, st);
        if (rc || remove_missing(s, abs, st)) return -1;
    }
    return 0;
}

int bee_search_index(bee_search *s, const char *const *paths, size_t n, bee_index_stats *st) {
    memset(st, 0, sizeof *st);
    if (exec(s, "DELETE FROM seen")) return -1;
    int rc = index_paths(s, paths, n, st);
    if (rc) {
        /* what was written before a failure that was not the database's own is kept */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", bee_error_message());
        if (batch_commit(s) == 0) bee_fail("%s", msg);
        return -1;
    }
    return batch_commit(s);
}

/* ================================================================ queries */

/* English function words, dropped from queries (not from documents) when
 * the query has other terms: "How do I keep my system current?" searches
 * keep, system, current. Compared with the query's own lower-cased text. */
static const char *const k_stop_en[] = {
    "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been", "but", "by",
    "can", "could", "did", "do", "does", "doing", "for", "from", "had", "has", "have", "how", "i", "if", "in",
    "into", "is", "it", "its", "me", "my", "of", "on", "or", "our", "should", "so", "some", "than", "that", "the",
    "their", "them", "then", "there", "these", "they", "this", "those", "to", "was", "we", "were", "what", "when",
    "where", "which", "who", "whom", "why", "will", "with", "would", "you", "your",
};

static int is_stop_word(const char *w, size_t n) {
    char low[16];
    if (n >= sizeof low) return 0;
    for (size_t i = 0; i < n; i++) {
        if (w[i] >= 'A' && w[i] <= 'Z') low[i] = (char)(w[i] + 32);
        else if (w[i] >= 'a' && w[i] <= 'z') low[i] = w[i];
        else return 0;
    }
    low[n] = 0;
    size_t lo = 0, hi = sizeof k_stop_en / sizeof k_stop_en[0];
    while (lo < hi) { /* the list is sorted */
        size_t mid = (lo + hi) / 2;
        int c = strcmp(low, k_stop_en[mid]);
        if (c == 0) return 1;
        if (c < 0) hi = mid;
        else lo = mid + 1;
    }
    return 0;
}

#define BEE_SEARCH_MAX_TERMS 64

typedef struct {
    char *tok;          /* the token (dedup key) */
    size_t start, end;  /* its source text in the query */
    int stop;
    int prefix;         /* one CJK character: "c"* matches the bigrams it starts and itself */
} expr_term;

typedef struct {
    const char *q;
    expr_term t[BEE_SEARCH_MAX_TERMS];
    size_t n;
} expr_builder;

static int expr_add(void *user, const char *tok, size_t n, size_t start, size_t end, int colocated) {
    expr_builder *b = user;
    for (size_t i = 0; i < b->n; i++)
        if (strlen(b->t[i].tok) == n && memcmp(b->t[i].tok, tok, n) == 0) return 0;
    if (b->n == BEE_SEARCH_MAX_TERMS) return 1; /* enough: more terms add cost, not recall */
    if (!(b->t[b->n].tok = strndup(tok, n))) return -1;
    b->t[b->n].start = start, b->t[b->n].end = end;
    b->t[b->n].stop = is_stop_word(b->q + start, end - start);
    b->t[b->n].prefix = bee_search_cjk_char(tok, n);
    b->n++;
    return 0;
}

char *bee_search_match_expr(const char *query) {
    expr_builder b = {query, {{0}}, 0};
    int rc = bee_search_tokenize(query, strlen(query), BEE_STOK_QUERY, expr_add, &b);
    size_t content = 0;
    for (size_t i = 0; i < b.n; i++) content += !b.t[i].stop;
    bee_str out = {0};
    bee_str_append(&out, "", 0);
    for (size_t i = 0; i < b.n; i++) {
        if (content && b.t[i].stop) continue; /* a query of stop words only keeps them all */
        /* the token's own source text, quoted: FTS5 re-tokenizes it to exactly this token, and nothing a user types can be FTS5 syntax */
        if (out.n) bee_str_appendz(&out, " OR ");
        bee_str_append(&out, "\"", 1);
        for (size_t k = b.t[i].start; k < b.t[i].end; k++)
            bee_str_append(&out, query[k] == '"' ? "\"\"" : query + k, 1 + (query[k] == '"'));
        bee_str_append(&out, b.t[i].prefix ? "\"*" : "\"", 1 + (size_t)b.t[i].prefix);
    }
    for (size_t i = 0; i < b.n; i++) free(b.t[i].tok);
    if (rc < 0 || !out.s) {
        bee_str_free(&out);
        bee_fail("out of memory");
        return NULL;
    }
    return bee_str_take(&out);
}

static char *col_dup(sqlite3_stmt *q, int i) {
    const char *t = (const char *)sqlite3_column_text(q, i);
    return strdup(t ? t : "");
}

/* Runs one MATCH expression: the top k passages by BM25 with the context
 * column weighted s->ctx_weight against 1 for the text. */
static int run_match(bee_search *s, const char *expr, int k, bee_search_hit **hits, size_t *n) {
    *hits = NULL;
    *n = 0;
    sqlite3_stmt *q;
    static const char k_sql[] =
        "SELECT coalesce(p.doc, f.path), p.seq, p.offset, p.heading, r.text, r.score FROM "
        "(SELECT rowid AS id, text, -rank AS score FROM fts WHERE fts MATCH ?1 AND rank MATCH ?3 "
        "ORDER BY rank LIMIT ?2) r "
        "JOIN passages p ON p.id = r.id JOIN files f ON f.id = p.file_id ORDER BY r.score DESC";
    if (sqlite3_prepare_v2(s->db, k_sql, -1, &q, NULL) != SQLITE_OK) return db_fail(s, "query");
    char rank[128];
    snprintf(rank, sizeof rank, "beerank(%.4f, %.4f, 1.0, %.4f)", s->k1, s->b, s->ctx_weight);
    sqlite3_bind_text(q, 1, expr, -1, SQLITE_STATIC);
    sqlite3_bind_int(q, 2, k);
    sqlite3_bind_text(q, 3, rank, -1, SQLITE_TRANSIENT);
    bee_search_hit *h = calloc((size_t)k, sizeof *h);
    int rc = h ? 0 : bee_fail("out of memory"), step = SQLITE_DONE;
    while (rc == 0 && *n < (size_t)k && (step = sqlite3_step(q)) == SQLITE_ROW) {
        bee_search_hit *x = &h[(*n)++];
        x->doc = col_dup(q, 0);
        x->passage = sqlite3_column_int64(q, 1);
        x->offset = sqlite3_column_int64(q, 2);
        x->heading = col_dup(q, 3);
        x->text = col_dup(q, 4);
        x->score = sqlite3_column_double(q, 5);
        if (!x->doc || !x->heading || !x->text) rc = bee_fail("out of memory");
    }
    if (rc == 0 && step != SQLITE_DONE && step != SQLITE_ROW) rc = db_fail(s, "query");
    sqlite3_finalize(q);
    if (rc) {
        bee_search_hits_free(h, *n);
        *n = 0;
        return -1;
    }
    *hits = h;
    return 0;
}

/* ---------------------------------------------------------------- pseudo-relevance feedback (RM3-like)
 * The first pass's top passages vote for terms: each term gets
 * sum over passages of (tf / passage length) * (passage score / sum of
 * scores); the best PRF_CANDIDATES of those are weighted by their IDF
 * (document frequency from an fts5vocab table) and the best prf_terms that
 * are not already in the query are OR-ed to it. The original query's terms
 * are given twice (FTS5 scores each phrase of the expression), so they keep
 * twice the weight of an expansion term. */
#define PRF_SLOTS 4096
#define PRF_CANDIDATES 64

typedef struct {
    char tok[BEE_SEARCH_TOKEN_MAX + 4];
    double w;
} prf_term;

typedef struct {
    prf_term *t; /* PRF_SLOTS, open addressing; tok[0] == 0: empty */
    size_t used;
    double doc_w; /* weight of the passage being read, over its length */
    size_t ntok;  /* its token count (first sweep) */
    int counting;
} prf_acc;

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ULL;
    return h;
}

static int prf_add(void *user, const char *tok, size_t n, size_t start, size_t end, int colocated) {
    prf_acc *a = user;
    if (a->counting) {
        a->ntok++;
        return 0;
    }
    if (n == 0 || n > BEE_SEARCH_TOKEN_MAX || bee_search_cjk_char(tok, n)) return 0; /* lone CJK characters: too vague */
    if (n < 3 && (unsigned char)tok[0] < 0x80) return 0; /* 1-2 letter words and numbers */
    if (is_stop_word(tok, n)) return 0;
    for (size_t i = (size_t)(fnv(tok, n) & (PRF_SLOTS - 1)), probes = 0; probes < PRF_SLOTS; i = (i + 1) & (PRF_SLOTS - 1), probes++) {
        prf_term *t = &a->t[i];
        if (!t->tok[0]) {
            if (a->used >= PRF_SLOTS / 2) return 0; /* full enough */
            memcpy(t->tok, tok, n);
            t->tok[n] = 0;
            t->w = a->doc_w;
            a->used++;
            return 0;
        }
        if (strlen(t->tok) == n && memcmp(t->tok, tok, n) == 0) {
            t->w += a->doc_w;
            return 0;
        }
    }
    return 0;
}

/* 1 when the token, quoted in a query, comes back as exactly itself (so it is safe to search for). */
typedef struct {
    const char *want;
    size_t n;
    int count, same;
} roundtrip;

static int rt_cb(void *user, const char *tok, size_t n, size_t start, size_t end, int colocated) {
    roundtrip *r = user;
    r->count++;
    r->same = n == r->n && memcmp(tok, r->want, n) == 0;
    return 0;
}

static int cmp_prf(const void *a, const void *b) {
    double x = ((const prf_term *)a)->w, y = ((const prf_term *)b)->w;
    return x < y ? 1 : x > y ? -1 : strcmp(((const prf_term *)a)->tok, ((const prf_term *)b)->tok);
}

static int collect_query_tok(void *user, const char *tok, size_t n, size_t start, size_t end, int colocated) {
    prf_acc *a = user;
    for (size_t i = (size_t)(fnv(tok, n) & (PRF_SLOTS - 1)), probes = 0; probes < PRF_SLOTS; i = (i + 1) & (PRF_SLOTS - 1), probes++) {
        prf_term *t = &a->t[i];
        if (!t->tok[0]) return 0;
        if (strlen(t->tok) == n && memcmp(t->tok, tok, n) == 0) {
            t->w = -1; /* already in the query */
            return 0;
        }
    }
    return 0;
}

/* The expanded expression (malloc'd), or NULL with *err set on failure; expr itself when there is nothing to add. */
static char *prf_expand(bee_search *s, const char *query, const char *expr, int *err) {
    *err = 0;
    bee_search_hit *h;
    size_t nh;
    if (run_match(s, expr, s->prf_docs, &h, &nh)) {
        *err = 1;
        return NULL;
    }
    char *out = NULL;
    prf_acc a = {calloc(PRF_SLOTS, sizeof(prf_term)), 0, 0, 0, 0};
    double total = 0;
    for (size_t i = 0; i < nh; i++) total += h[i].score > 0 ? h[i].score : 0;
    sqlite3_stmt *df = NULL;
    if (!a.t) {
        *err = 1;
        bee_fail("out of memory");
        goto done;
    }
    for (size_t i = 0; i < nh && total > 0; i++) {
        size_t len = strlen(h[i].text);
        a.counting = 1, a.ntok = 0;
        bee_search_tokenize(h[i].text, len, BEE_STOK_DOCUMENT, prf_add, &a);
        if (!a.ntok) continue;
        a.counting = 0;
        a.doc_w = (h[i].score > 0 ? h[i].score : 0) / total / (double)a.ntok;
        bee_search_tokenize(h[i].text, len, BEE_STOK_DOCUMENT, prf_add, &a);
    }
    bee_search_tokenize(query, strlen(query), BEE_STOK_QUERY, collect_query_tok, &a);
    /* compact and keep the best candidates by feedback weight */
    size_t m = 0;
    for (size_t i = 0; i < PRF_SLOTS; i++)
        if (a.t[i].tok[0] && a.t[i].w > 0) a.t[m++] = a.t[i];
    qsort(a.t, m, sizeof *a.t, cmp_prf);
    if (m > PRF_CANDIDATES) m = PRF_CANDIDATES;
    if (!m) goto done;
    if (exec(s, "CREATE VIRTUAL TABLE IF NOT EXISTS temp.bee_vocab USING fts5vocab(main, 'fts', 'row')") ||
        sqlite3_prepare_v2(s->db, "SELECT count(*) FROM passages", -1, &df, NULL) != SQLITE_OK) {
        if (!df) db_fail(s, "vocab");
        *err = 1;
        goto done;
    }
    double N = sqlite3_step(df) == SQLITE_ROW ? sqlite3_column_double(df, 0) : 1;
    sqlite3_finalize(df);
    df = NULL;
    if (sqlite3_prepare_v2(s->db, "SELECT doc FROM temp.bee_vocab WHERE term=?1", -1, &df, NULL) != SQLITE_OK) {
        db_fail(s, "vocab");
        *err = 1;
        goto done;
    }
    for (size_t i = 0; i < m; i++) {
        double d = 0;
        sqlite3_bind_text(df, 1, a.t[i].tok, -1, SQLITE_STATIC);
        if (sqlite3_step(df) == SQLITE_ROW) d = sqlite3_column_double(df, 0);
        sqlite3_reset(df);
        double idf = log((N - d + 0.5) / (d + 0.5));
        roundtrip r = {a.t[i].tok, strlen(a.t[i].tok), 0, 0};
        bee_search_tokenize(r.want, r.n, BEE_STOK_QUERY, rt_cb, &r);
        a.t[i].w = (idf > 0 && r.count == 1 && r.same) ? a.t[i].w * idf : 0;
    }
    qsort(a.t, m, sizeof *a.t, cmp_prf);
    bee_str e = {0};
    bee_str_appendz(&e, expr);
    bee_str_appendz(&e, " OR ");
    bee_str_appendz(&e, expr);
    for (size_t i = 0; i < m && i < (size_t)s->prf_terms && a.t[i].w > 0; i++) {
        bee_str_appendz(&e, " OR \"");
        bee_str_appendz(&e, a.t[i].tok); /* normalised tokens: letters, digits, CJK; never a quote */
        bee_str_appendz(&e, "\"");
    }
    if (!e.s) {
        *err = 1;
        bee_fail("out of memory");
    } else out = bee_str_take(&e);
done:
    sqlite3_finalize(df);
    free(a.t);
    bee_search_hits_free(h, nh);
    return out;
}

int bee_search_query(bee_search *s, const char *query, int k, bee_search_hit **hits, size_t *n) {
    *hits = NULL;
    *n = 0;
    char *expr = bee_search_match_expr(query);
    if (!expr) return -1;
    if (!expr[0] || k <= 0) {
        free(expr);
        return 0;
    }
    if (s->prf_docs > 0 && s->prf_terms > 0) {
        int err;
        char *x = prf_expand(s, query, expr, &err);
        if (err) {
            free(expr);
            return -1;
        }
        if (x) {
            free(expr);
            expr = x;
        }
    }
    int rc = run_match(s, expr, k, hits, n);
    free(expr);
    return rc;
}

void bee_search_get_params(const bee_search *s, bee_search_params *p) {
    p->context_weight = s->ctx_weight;
    p->k1 = s->k1;
    p->b = s->b;
    p->prf_docs = s->prf_docs;
    p->prf_terms = s->prf_terms;
}

int bee_search_set_params(bee_search *s, const bee_search_params *p) {
    if (!(p->context_weight >= 0 && p->context_weight <= 1000) || p->prf_docs < 0 || p->prf_docs > 100 ||
        p->prf_terms < 0 || p->prf_terms > BEE_SEARCH_MAX_TERMS || !(p->k1 >= 0 && p->k1 <= 100) ||
        !(p->b >= 0 && p->b <= 1))
        return bee_fail("search parameters out of range");
    s->ctx_weight = p->context_weight;
    s->k1 = p->k1;
    s->b = p->b;
    s->prf_docs = p->prf_docs;
    s->prf_terms = p->prf_terms;
    return 0;
}

#else /* !BEE_HAVE_SQLITE */

int bee_search_open(const char *path, bee_search **out) {
    *out = NULL;
    return bee_fail("%s: bee was built without SQLite (install libsqlite3-dev and rebuild)", path);
}
void bee_search_close(bee_search *s) {}
int bee_search_index(bee_search *s, const char *const *paths, size_t n, bee_index_stats *st) {
    return bee_fail("built without SQLite");
}
int bee_search_query(bee_search *s, const char *query, int k, bee_search_hit **hits, size_t *n) {
    return bee_fail("built without SQLite");
}
char *bee_search_match_expr(const char *query) { return strdup(""); }
void bee_search_get_params(const bee_search *s, bee_search_params *p) { memset(p, 0, sizeof *p); }
int bee_search_set_params(bee_search *s, const bee_search_params *p) { return bee_fail("built without SQLite"); }

#endif

void bee_search_hits_free(bee_search_hit *h, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(h[i].doc);
        free(h[i].heading);
        free(h[i].text);
    }
    free(h);
}
