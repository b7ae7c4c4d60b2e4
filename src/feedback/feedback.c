#include "feedback/feedback.h"

#include <stdlib.h>
#include <string.h>

#include "util/error.h"
#include "util/json.h"

#ifdef BEE_HAVE_SQLITE

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/random.h>
#include <time.h>

#include "tokenizer/tokenizer.h"
#include "util/buf.h"
#include "util/file.h"
#include "safety/normalize.h"

struct bee_feedback {
    sqlite3 *db;
    sqlite3_stmt *ins_response, *ins_feedback;
    pthread_mutex_t lock;
    char *path;
};

/* synchronous=FULL in WAL mode fsyncs the log on every commit, so a commit
 * that returned is on disk; NORMAL would only protect against corruption. */
static const char k_schema[] =
    "PRAGMA foreign_keys=ON;"
    "CREATE TABLE IF NOT EXISTS responses("
    " id TEXT PRIMARY KEY,"
    " time INTEGER NOT NULL,"       /* Unix milliseconds */
    " model TEXT,"
    " prompt TEXT NOT NULL,"        /* JSON: string, CPM-Bee dict or chat messages */
    " response TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS feedback("
    " id INTEGER PRIMARY KEY,"
    " response_id TEXT NOT NULL REFERENCES responses(id),"
    " rating INTEGER NOT NULL CHECK(rating IN (-1, 1)),"
    " correction TEXT,"
    " time INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS feedback_response ON feedback(response_id);";

static int db_fail(bee_feedback *fb, const char *what) {
    return bee_fail("%s: %s: %s", fb->path, what, fb->db ? sqlite3_errmsg(fb->db) : "out of memory");
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ================================================================ open / close */

static int set_wal(bee_feedback *fb) {
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(fb->db, "PRAGMA journal_mode=WAL", -1, &st, NULL) != SQLITE_OK) return db_fail(fb, "WAL");
    int ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!ok) return bee_fail("%s: cannot switch to WAL mode (is the folder on a local file system?)", fb->path);
    return sqlite3_exec(fb->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL) == SQLITE_OK ? 0 : db_fail(fb, "synchronous");
}

void bee_feedback_close(bee_feedback *fb) {
    if (!fb) return;
    sqlite3_finalize(fb->ins_response);
    sqlite3_finalize(fb->ins_feedback);
    sqlite3_close(fb->db);
    pthread_mutex_destroy(&fb->lock);
    free(fb->path);
    free(fb);
}

int bee_feedback_open(const char *path, bee_feedback **out) {
    bee_feedback *fb = calloc(1, sizeof *fb);
    if (!fb || !(fb->path = strdup(path))) {
        free(fb);
        return bee_fail("feedback: out of memory");
    }
    pthread_mutex_init(&fb->lock, NULL);
    int rc = sqlite3_open_v2(path, &fb->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        db_fail(fb, "cannot open");
        bee_feedback_close(fb);
        return -1;
    }
    sqlite3_busy_timeout(fb->db, 10000);
    if (set_wal(fb) || (sqlite3_exec(fb->db, k_schema, NULL, NULL, NULL) != SQLITE_OK && db_fail(fb, "schema")) ||
        (sqlite3_prepare_v2(fb->db, "INSERT INTO responses(id, time, model, prompt, response) VALUES (?1, ?2, ?3, ?4, ?5)",
                            -1, &fb->ins_response, NULL) != SQLITE_OK &&
         db_fail(fb, "prepare")) ||
        (sqlite3_prepare_v2(fb->db,
                            "INSERT INTO feedback(response_id, rating, correction, time)"
                            " SELECT ?1, ?2, ?3, ?4 WHERE EXISTS (SELECT 1 FROM responses WHERE id = ?1)",
                            -1, &fb->ins_feedback, NULL) != SQLITE_OK &&
         db_fail(fb, "prepare"))) {
        bee_feedback_close(fb);
        return -1;
    }
    *out = fb;
    return 0;
}

/* ================================================================ recording */

static int random_id(char *buf, size_t cap) {
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) return bee_fail("feedback: no randomness for an id");
    if (cap < 5 + 32 + 1) return bee_fail("feedback: id buffer too small");
    memcpy(buf, "resp-", 5);
    for (int i = 0; i < 16; i++) snprintf(buf + 5 + 2 * i, 3, "%02x", r[i]);
    return 0;
}

static int check_response(const bee_feedback_response *r) {
    if (!r->prompt || !r->response) return bee_fail("feedback: a response needs prompt and response");
    if (r->id && (!*r->id || strlen(r->id) >= BEE_FEEDBACK_ID_MAX))
        return bee_fail("feedback: response id must have 1 to %d bytes", BEE_FEEDBACK_ID_MAX - 1);
    json_error_t err;
    json_t *j = json_loads(r->prompt, JSON_DECODE_ANY, &err);
    if (!j) return bee_fail("feedback: prompt is not JSON (%s); pass a JSON string, dict or messages array", err.text);
    json_decref(j);
    return 0;
}

int bee_feedback_record_response(bee_feedback *fb, const bee_feedback_response *r, char *id_out, size_t id_cap) {
    char idbuf[BEE_FEEDBACK_ID_MAX];
    if (check_response(r)) return -1;
    const char *id = r->id;
    if (!id) {
        if (random_id(idbuf, sizeof idbuf)) return -1;
        id = idbuf;
    }
    if (id_out && strlen(id) >= id_cap) return bee_fail("feedback: id buffer too small");
    pthread_mutex_lock(&fb->lock);
    sqlite3_stmt *st = fb->ins_response;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 2, r->time_ms ? r->time_ms : now_ms());
    if (r->model) sqlite3_bind_text(st, 3, r->model, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, 3);
    sqlite3_bind_text(st, 4, r->prompt, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 5, r->response, -1, SQLITE_TRANSIENT);
    int rc = sqlite3_step(st);
    int ext = sqlite3_extended_errcode(fb->db);
    sqlite3_reset(st);
    int ret = 0;
    if (rc == SQLITE_CONSTRAINT && ext == SQLITE_CONSTRAINT_PRIMARYKEY)
        ret = bee_fail("feedback: response id '%s' is already recorded", id);
    else if (rc != SQLITE_DONE) ret = db_fail(fb, "record response");
    pthread_mutex_unlock(&fb->lock);
    if (ret == 0 && id_out) snprintf(id_out, id_cap, "%s", id);
    return ret;
}

int bee_feedback_record_feedback(bee_feedback *fb, const char *response_id, int rating, const char *correction) {
    if (rating != -1 && rating != 1) return bee_fail("feedback: rating must be -1 or +1, got %d", rating);
    if (!response_id) return bee_fail("feedback: missing response id");
    pthread_mutex_lock(&fb->lock);
    sqlite3_stmt *st = fb->ins_feedback;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, response_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int(st, 2, rating);
    if (correction && *correction) sqlite3_bind_text(st, 3, correction, -1, SQLITE_TRANSIENT);
    else sqlite3_bind_null(st, 3);
    sqlite3_bind_int64(st, 4, now_ms());
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    int ret = 0;
    if (rc != SQLITE_DONE) ret = db_fail(fb, "record feedback");
    else if (sqlite3_changes(fb->db) == 0) ret = bee_fail("feedback: unknown response id '%s'", response_id);
    pthread_mutex_unlock(&fb->lock);
    return ret;
}

static int parse_feedback_json(json_t *j, const char **id, int *rating, const char **correction) {
    static const char *const keys[] = {"response_id", "id", "rating", "correction", NULL};
    if (!json_is_object(j)) return bee_fail("feedback: expected a JSON object");
    const char *key;
    json_t *v;
    json_object_foreach(j, key, v) {
        int ok = 0;
        for (size_t i = 0; keys[i]; i++) ok |= strcmp(key, keys[i]) == 0;
        if (!ok) return bee_fail("feedback: %s: unknown field", key);
    }
    json_t *jid = json_object_get(j, "response_id");
    if (!jid) jid = json_object_get(j, "id");
    if (!json_is_string(jid) || !json_string_length(jid)) return bee_fail("feedback: response_id: expected a string");
    json_t *r = json_object_get(j, "rating");
    if (!json_is_integer(r) || (json_integer_value(r) != 1 && json_integer_value(r) != -1))
        return bee_fail("feedback: rating: expected 1 or -1");
    json_t *c = json_object_get(j, "correction");
    if (c && !json_is_string(c) && !json_is_null(c)) return bee_fail("feedback: correction: expected a string");
    *id = json_string_value(jid);
    *rating = (int)json_integer_value(r);
    *correction = json_is_string(c) ? json_string_value(c) : NULL;
    return 0;
}

int bee_feedback_record_json(bee_feedback *fb, const char *body, size_t len) {
    json_error_t err;
    json_t *j = json_loadb(body, len, JSON_REJECT_DUPLICATES, &err);
    if (!j) return bee_fail("feedback: invalid JSON at line %d column %d: %s", err.line, err.column, err.text);
    const char *id = NULL, *correction = NULL;
    int rating = 0;
    int rc = parse_feedback_json(j, &id, &rating, &correction) || bee_feedback_record_feedback(fb, id, rating, correction);
    json_decref(j);
    return rc ? -1 : 0;
}

int bee_feedback_count(bee_feedback *fb, int64_t *n_responses, int64_t *n_feedback) {
    pthread_mutex_lock(&fb->lock);
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(fb->db, "SELECT (SELECT count(*) FROM responses), (SELECT count(*) FROM feedback)", -1,
                                &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        *n_responses = sqlite3_column_int64(st, 0);
        *n_feedback = sqlite3_column_int64(st, 1);
        rc = 0;
    } else {
        rc = db_fail(fb, "count");
    }
    sqlite3_finalize(st);
    pthread_mutex_unlock(&fb->lock);
    return rc;
}

/* ================================================================ export */

typedef struct {
    char *prompt;   /* rendered prompt text (the grouping key) */
    json_t *dict;   /* the prompt when it was a CPM-Bee dict, else NULL */
    char *response;
    char *correction; /* NULL if none */
    int rating;
} rated;

static json_t *jstr(const char *s) { return bee_json_string_lossy(s, strlen(s)); }

/* Chat messages in the CPM-Bee dialogue form that `bee chat` uses:
 * 用户：…<sep>AI：…<sep>用户：…<sep>AI： */
static char *render_messages(json_t *msgs) {
    bee_str s = {0};
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        const char *content = json_string_value(json_object_get(m, "content"));
        if (!role || !content) continue;
        if (strcmp(role, "user") == 0) bee_str_appendz(&s, "用户：");
        else if (strcmp(role, "assistant") == 0) bee_str_appendz(&s, "AI：");
        bee_text_escape(content, strlen(content), &s);
        bee_str_appendz(&s, "<sep>");
    }
    bee_str_appendz(&s, "AI：");
    return bee_str_take(&s);
}

static char *render_prompt(const char *prompt_json, json_t **dict) {
    *dict = NULL;
    json_t *j = json_loads(prompt_json, JSON_DECODE_ANY, NULL);
    char *out = NULL;
    if (json_is_string(j)) {
        out = strdup(json_string_value(j));
    } else if (json_is_array(j)) {
        out = render_messages(j);
    } else if (json_is_object(j)) {
        json_object_del(j, "<ans>");
        json_t *in = json_object_get(j, "input");
        out = json_is_string(in) ? strdup(json_string_value(in)) : json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
        *dict = json_incref(j);
    } else {
        out = strdup(prompt_json); /* numbers and such: kept verbatim */
    }
    json_decref(j);
    return out;
}

static void rated_free(rated *r, size_t n) {
    for (size_t i = 0; i < n; i++) {
        free(r[i].prompt);
        free(r[i].response);
        free(r[i].correction);
        json_decref(r[i].dict);
    }
    free(r);
}

static int load_rated(bee_feedback *fb, rated **out, size_t *n_out) {
    static const char q[] =
        "SELECT r.prompt, r.response, f.rating, f.correction FROM responses r JOIN feedback f ON f.response_id = r.id"
        " WHERE f.id = (SELECT max(id) FROM feedback WHERE response_id = r.id) ORDER BY r.time, r.id";
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(fb->db, q, -1, &st, NULL) != SQLITE_OK) return db_fail(fb, "export");
    rated *v = NULL;
    size_t n = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            rated *nv = realloc(v, cap * sizeof *nv);
            if (!nv) break;
            v = nv;
        }
        rated *r = &v[n++];
        r->prompt = render_prompt((const char *)sqlite3_column_text(st, 0), &r->dict);
        r->response = strdup((const char *)sqlite3_column_text(st, 1));
        r->rating = sqlite3_column_int(st, 2);
        const char *c = (const char *)sqlite3_column_text(st, 3);
        r->correction = c ? strdup(c) : NULL;
        if (!r->prompt || !r->response || (c && !r->correction)) break;
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        rated_free(v, n);
        return rc == SQLITE_ROW ? bee_fail("feedback export: out of memory") : db_fail(fb, "export");
    }
    *out = v;
    *n_out = n;
    return 0;
}

static int put_line(bee_str *s, json_t *o) {
    char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    if (!line) return bee_fail("feedback export: cannot encode a line");
    int rc = bee_str_appendz(s, line) || bee_str_append(s, "\n", 1);
    free(line);
    return rc ? bee_fail("feedback export: out of memory") : 0;
}

/* {"input": prompt, "<ans>": answer}; a CPM-Bee dict prompt keeps its fields. */
static int sft_line(bee_str *s, const rated *r, const char *answer) {
    json_t *o = r->dict ? json_deep_copy(r->dict) : json_pack("{s:o}", "input", jstr(r->prompt));
    if (o) json_object_set_new(o, "<ans>", jstr(answer));
    return put_line(s, o);
}

static int pair_line(bee_str *s, const char *prompt, const char *chosen, const char *rejected) {
    return put_line(s, json_pack("{s:o, s:o, s:o}", "prompt", jstr(prompt), "chosen", jstr(chosen), "rejected",
                                 jstr(rejected)));
}

static int by_prompt(const void *x, const void *y) {
    const rated *a = *(const rated *const *)x, *b = *(const rated *const *)y;
    int c = strcmp(a->prompt, b->prompt);
    return c ? c : (a < b ? -1 : a > b);
}

/* Liked vs disliked answers to the same prompt, each distinct pair once. */
static int liked_vs_disliked(bee_str *s, rated *v, size_t n, size_t *n_pairs) {
    rated **order = malloc((n ? n : 1) * sizeof *order);
    if (!order) return bee_fail("feedback export: out of memory");
    for (size_t i = 0; i < n; i++) order[i] = &v[i];
    qsort(order, n, sizeof *order, by_prompt);
    int rc = 0;
    for (size_t g = 0; g < n && !rc;) {
        size_t e = g;
        while (e < n && strcmp(order[e]->prompt, order[g]->prompt) == 0) e++;
        for (size_t i = g; i < e && !rc; i++) {
            if (order[i]->rating != 1) continue;
            for (size_t j = g; j < e && !rc; j++) {
                if (order[j]->rating != -1 || strcmp(order[i]->response, order[j]->response) == 0) continue;
                int dup = 0; /* the same texts rated again */
                for (size_t a = g; a < i && !dup; a++)
                    dup = order[a]->rating == 1 && strcmp(order[a]->response, order[i]->response) == 0;
                for (size_t b = g; b < j && !dup; b++)
                    dup = order[b]->rating == -1 && strcmp(order[b]->response, order[j]->response) == 0;
                if (dup) continue;
                rc = pair_line(s, order[i]->prompt, order[i]->response, order[j]->response);
                (*n_pairs)++;
            }
        }
        g = e;
    }
    free(order);
    return rc;
}

static int build_export(rated *v, size_t n, bee_str *sft, bee_str *pairs, bee_feedback_export_stats *st) {
    for (size_t i = 0; i < n; i++) {
        const rated *r = &v[i];
        const char *answer = r->correction ? r->correction : r->rating == 1 ? r->response : NULL;
        if (answer) {
            if (sft_line(sft, r, answer)) return -1;
            st->n_sft++;
        }
        if (r->correction && strcmp(r->correction, r->response) != 0) {
            if (pair_line(pairs, r->prompt, r->correction, r->response)) return -1;
            st->n_pairs++;
        }
    }
    return liked_vs_disliked(pairs, v, n, &st->n_pairs);
}

static int write_file(const char *dir, const char *name, const bee_str *s) {
    bee_str path = {0};
    bee_str_printf(&path, "%s/%s", dir, name);
    int rc = path.s ? bee_write_file_atomic(path.s, s->s ? s->s : "", s->n) : bee_fail("out of memory");
    bee_str_free(&path);
    return rc;
}

int bee_feedback_export(bee_feedback *fb, const char *out_dir, bee_feedback_export_stats *stats) {
    bee_feedback_export_stats st = {0};
    rated *v = NULL;
    size_t n = 0;
    bee_str sft = {0}, pairs = {0};
    if (bee_mkdir_p(out_dir)) return -1;
    pthread_mutex_lock(&fb->lock);
    int rc = load_rated(fb, &v, &n);
    pthread_mutex_unlock(&fb->lock);
    if (rc == 0) {
        st.n_rated = n;
        rc = build_export(v, n, &sft, &pairs, &st);
    }
    if (rc == 0) rc = write_file(out_dir, "sft.jsonl", &sft) || write_file(out_dir, "pairs.jsonl", &pairs) ? -1 : 0;
    rated_free(v, n);
    bee_str_free(&sft);
    bee_str_free(&pairs);
    if (rc == 0 && stats) *stats = st;
    return rc;
}

#else /* built without SQLite */

int bee_feedback_open(const char *path, bee_feedback **out) {
    (void)out;
    return bee_fail("%s: bee was built without SQLite (install libsqlite3-dev and rebuild)", path);
}
void bee_feedback_close(bee_feedback *fb) { (void)fb; }
int bee_feedback_record_response(bee_feedback *fb, const bee_feedback_response *r, char *id_out, size_t id_cap) {
    return bee_fail("feedback: built without SQLite");
}
int bee_feedback_record_feedback(bee_feedback *fb, const char *response_id, int rating, const char *correction) {
    return bee_fail("feedback: built without SQLite");
}
int bee_feedback_export(bee_feedback *fb, const char *out_dir, bee_feedback_export_stats *stats) {
    return bee_fail("feedback: built without SQLite");
}
int bee_feedback_count(bee_feedback *fb, int64_t *n_responses, int64_t *n_feedback) {
    return bee_fail("feedback: built without SQLite");
}
int bee_feedback_record_json(bee_feedback *fb, const char *body, size_t len) {
    return bee_fail("feedback: built without SQLite");
}

#endif
