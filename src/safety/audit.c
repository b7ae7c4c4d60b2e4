/* Audit trail of safety decisions in SQLite. WAL mode lets readers (a
 * dashboard, `sqlite3`) look while the server writes. */
#include <stdlib.h>
#include <string.h>

#include "safety/safety.h"
#include "util/error.h"

#ifdef BEE_HAVE_SQLITE
#include <sqlite3.h>

struct bee_safety_audit {
    sqlite3 *db;
    sqlite3_stmt *insert;
    char *path;
};

static const char k_schema[] =
    "PRAGMA journal_mode=WAL;"
    "PRAGMA synchronous=FULL;"
    "CREATE TABLE IF NOT EXISTS safety_audit("
    " id INTEGER PRIMARY KEY,"
    " time TEXT NOT NULL,"          /* UTC, ISO 8601 with milliseconds */
    " request_id TEXT,"
    " stage TEXT NOT NULL CHECK(stage IN ('prompt','output')),"
    " category TEXT NOT NULL,"
    " action TEXT NOT NULL CHECK(action IN ('log','mask','block')),"
    " term TEXT NOT NULL,"
    " start INTEGER NOT NULL,"      /* byte span in the checked text */
    " end INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS safety_audit_request ON safety_audit(request_id);";

static int audit_err(bee_safety_audit *a, const char *what) {
    return bee_fail("%s: %s: %s", a->path, what, a->db ? sqlite3_errmsg(a->db) : "out of memory");
}

void bee_safety_audit_close(bee_safety_audit *a) {
    if (!a) return;
    sqlite3_finalize(a->insert);
    sqlite3_close(a->db);
    free(a->path);
    free(a);
}

int bee_safety_audit_open(const char *path, bee_safety_audit **out) {
    bee_safety_audit *a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(path))) {
        free(a);
        return bee_fail("audit: out of memory");
    }
    int rc = sqlite3_open_v2(path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_busy_timeout(a->db, 5000);
    if (rc == SQLITE_OK) rc = sqlite3_exec(a->db, k_schema, NULL, NULL, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(a->db,
                                "INSERT INTO safety_audit(time, request_id, stage, category, action, term, start, end)"
                                " VALUES (strftime('%Y-%m-%dT%H:%M:%fZ','now'), ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                -1, &a->insert, NULL);
    if (rc != SQLITE_OK) {
        audit_err(a, "cannot open audit database");
        bee_safety_audit_close(a);
        return -1;
    }
    *out = a;
    return 0;
}

static int insert_one(bee_safety_audit *a, const char *request_id, bee_safety_stage stage, const bee_safety_match *m) {
    sqlite3_stmt *st = a->insert;
    sqlite3_reset(st);
    sqlite3_bind_text(st, 1, request_id, -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 2, bee_safety_stage_name(stage), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, m->category_name ? m->category_name : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 4, bee_safety_action_name(m->action), -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, m->term ? m->term : "", -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 6, (sqlite3_int64)m->start);
    sqlite3_bind_int64(st, 7, (sqlite3_int64)m->end);
    return sqlite3_step(st) == SQLITE_DONE ? 0 : -1;
}

int bee_safety_audit_record(bee_safety_audit *a, const char *request_id, bee_safety_stage stage,
                            const bee_safety_match *m, size_t n) {
    if (stage != BEE_SAFETY_STAGE_PROMPT && stage != BEE_SAFETY_STAGE_OUTPUT) return bee_fail("audit: bad stage");
    if (n == 0) return 0;
    if (sqlite3_exec(a->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) return audit_err(a, "begin");
    for (size_t i = 0; i < n; i++) {
        if (insert_one(a, request_id, stage, &m[i])) {
            audit_err(a, "insert");
            sqlite3_reset(a->insert);
            sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
    }
    sqlite3_reset(a->insert);
    if (sqlite3_exec(a->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        audit_err(a, "commit");
        sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

#else /* built without SQLite: the audit table is unavailable, checking still works */

int bee_safety_audit_open(const char *path, bee_safety_audit **out) {
    (void)out;
    return bee_fail("%s: bee was built without SQLite (install libsqlite3-dev and rebuild)", path);
}

int bee_safety_audit_record(bee_safety_audit *a, const char *request_id, bee_safety_stage stage,
                            const bee_safety_match *m, size_t n) {
    return bee_fail("audit: bee was built without SQLite");
}

void bee_safety_audit_close(bee_safety_audit *a) { (void)a; }

#endif
