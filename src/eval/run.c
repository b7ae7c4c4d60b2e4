/* bee eval: models × tasks, per-sample records with a resumable cache, and
 * the results, leaderboard and chart files. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eval/eval.h"
#include "model/lora.h"
#include "model/perplexity.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/file.h"

#define N_METRICS 6

enum { MODEL_LOCAL, MODEL_REMOTE, MODEL_UNIGRAM };

typedef struct {
    char *name, *path; /* path: the GGUF, the unigram's text file, or base_url for a remote model */
    int kind;          /* MODEL_* */
    int remote;
    char *model, *key_env;
    char *lora;        /* local: LoRA adapter applied at load (or NULL) */
    int timeout_ms;
    int retries;                /* remote: extra tries of a failed request */
    bee_remote_scoring scoring; /* remote: how log-likelihoods are obtained (found by the first request) */
    char *why;                  /* remote: the server's answer when it does not score prompts */
} eval_model;

typedef struct {
    bee_stat st[N_METRICS];
    size_t n;
} cell; /* one model × task */

typedef struct {
    const bee_eval_opts *o;
    eval_model *models;
    size_t n_models;
    bee_task *tasks;
    size_t n_tasks;
    cell *cells; /* (n_models, n_tasks) */
    json_t *cache; /* key -> record */
    FILE *cache_f;
    bee_eval_stats *st;
} eval_run;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---------------------------------------------------------------- models file */

static int is_yaml(const char *path) {
    size_t n = strlen(path);
    return (n > 5 && !strcmp(path + n - 5, ".yaml")) || (n > 4 && !strcmp(path + n - 4, ".yml"));
}

/* A string field of models[i]: NULL when absent; an error when not a string. */
static int opt_str(json_t *m, const char *key, const char *path, size_t i, const char **out) {
    json_t *v = json_object_get(m, key);
    *out = json_string_value(v);
    if (v && !json_is_string(v)) return bee_fail("%s: models[%zu]: \"%s\" must be a string", path, i, key);
    return 0;
}

static int load_models(eval_run *r, const char *path) {
    json_error_t je;
    json_t *root, *list, *m;
    if (is_yaml(path)) {
        if (!(root = bee_yaml_load_file(path))) return -1;
    } else if (!(root = json_load_file(path, 0, &je))) {
        return bee_fail("%s:%d: %s", path, je.line, je.text);
    }
    list = json_is_array(root) ? root : json_object_get(root, "models");
    int rc = json_array_size(list) ? 0 : bee_fail("%s: expected a non-empty list of models ({\"name\", \"path\"}, ...)", path);
    r->models = calloc(json_array_size(list) + 1, sizeof *r->models);
    size_t i;
    json_array_foreach(list, i, m) {
        if (rc) break;
        const char *name, *p, *type, *mod, *ke, *lora, *base;
        if (!json_is_object(m)) {
            rc = bee_fail("%s: models[%zu]: expected an object with \"name\" and \"path\"", path, i);
            break;
        }
        if (opt_str(m, "name", path, i, &name) || opt_str(m, "path", path, i, &p) || opt_str(m, "type", path, i, &type) ||
            opt_str(m, "model", path, i, &mod) || opt_str(m, "api_key_env", path, i, &ke) ||
            opt_str(m, "lora", path, i, &lora) || opt_str(m, "base_url", path, i, &base)) {
            rc = -1;
            break;
        }
        int kind = !type || !strcmp(type, "local") ? MODEL_LOCAL : !strcmp(type, "openai") ? MODEL_REMOTE
                   : !strcmp(type, "unigram")                 ? MODEL_UNIGRAM : -1;
        if (kind == MODEL_REMOTE) p = base;
        if (kind < 0)
            rc = bee_fail("%s: models[%zu]: type '%s' is not \"local\", \"openai\" or \"unigram\"", path, i, type);
        else if (!name || !*name || !p)
            rc = bee_fail("%s: models[%zu]: needs string \"name\" and %s", path, i, kind == MODEL_REMOTE ? "\"base_url\"" : "\"path\"");
        else if (lora && kind != MODEL_LOCAL)
            rc = bee_fail("%s: models[%zu]: \"lora\" applies to local models only", path, i);
        json_t *rt = json_object_get(m, "retries");
        if (rc == 0 && rt && (!json_is_integer(rt) || json_integer_value(rt) < 0 || json_integer_value(rt) > 100))
            rc = bee_fail("%s: models[%zu]: \"retries\" must be an integer in [0, 100]", path, i);
        for (size_t k = 0; rc == 0 && k < r->n_models; k++)
            if (!strcmp(r->models[k].name, name)) rc = bee_fail("%s: models[%zu]: name '%s' used twice", path, i, name);
        if (rc == 0) {
            eval_model *em = &r->models[r->n_models++];
            json_t *to = json_object_get(m, "timeout_s");
            em->name = strdup(name);
            em->path = strdup(p);
            em->kind = kind;
            em->remote = kind == MODEL_REMOTE;
            em->model = strdup(mod ? mod : name);
            em->key_env = ke ? strdup(ke) : NULL;
            em->lora = lora ? strdup(lora) : NULL;
            em->timeout_ms = 1000 * (json_is_integer(to) && json_integer_value(to) > 0 ? (int)json_integer_value(to) : 600);
            em->retries = rt ? (int)json_integer_value(rt) : 3;
        }
    }
    json_decref(root);
    return rc;
}

/* ---------------------------------------------------------------- cache
 * An append-only JSONL log {"key": K, "record": R}; a torn last line (an
 * interrupted run) is ignored. */

static int cache_open(eval_run *r) {
    char path[4096];
    snprintf(path, sizeof path, "%s/cache.jsonl", r->o->out_dir);
    r->cache = json_object();
    char *s = NULL;
    size_t len;
    if (bee_file_exists(path) && bee_read_file(path, &s, &len) == 0) {
        for (char *p = s, *nl; *p; p = nl ? nl + 1 : p + strlen(p)) {
            nl = strchr(p, '\n');
            json_t *j = json_loadb(p, nl ? (size_t)(nl - p) : strlen(p), 0, NULL);
            const char *k = json_string_value(json_object_get(j, "key"));
            if (k && json_is_object(json_object_get(j, "record"))) json_object_set(r->cache, k, json_object_get(j, "record"));
            json_decref(j);
        }
    }
    free(s);
    r->cache_f = fopen(path, "a");
    return r->cache_f ? 0 : bee_fail("%s: cannot open for appending", path);
}

static void cache_put(eval_run *r, const char *key, json_t *rec) {
    json_t *line = json_pack("{s:s,s:O}", "key", key, "record", rec);
    char *s = json_dumps(line, JSON_COMPACT);
    if (s) {
        fprintf(r->cache_f, "%s\n", s);
        fflush(r->cache_f);
    }
    free(s);
    json_decref(line);
    json_object_set(r->cache, key, rec);
}

static uint64_t fnv(uint64_t h, const char *s) {
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return (h ^ 0xFF) * 0x100000001B3ull; /* field separator */
}

/* The model file's size and mtime stand in for its contents. */
static void sample_key(const eval_model *em, const bee_task *t, const char *prompt, json_t *options, char *out) {
    struct stat st;
    char buf[128];
    uint64_t h = 0xCBF29CE484222325ull;
    memset(&st, 0, sizeof st);
    stat(em->path, &st);
    snprintf(buf, sizeof buf, "%lld:%lld:%d:%d", (long long)st.st_size, (long long)st.st_mtime, (int)t->type, t->max_tokens);
    h = fnv(fnv(fnv(fnv(h, em->name), em->path), buf), t->name);
    if (em->lora) { /* the adapter's identity joins the key */
        struct stat ls;
        memset(&ls, 0, sizeof ls);
        stat(em->lora, &ls);
        snprintf(buf, sizeof buf, "lora:%lld:%lld", (long long)ls.st_size, (long long)ls.st_mtime);
        h = fnv(fnv(h, em->lora), buf);
    }
    if (em->kind == MODEL_UNIGRAM) h = fnv(h, "unigram");
    h = fnv(h, prompt);
    char *o = json_dumps(options, JSON_COMPACT | JSON_ENCODE_ANY);
    if (o) h = fnv(h, o);
    free(o);
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

/* ---------------------------------------------------------------- one sample */

static json_t *render_list(const bee_task *t, json_t *tmpls, json_t *sample) {
    json_t *out = json_array(), *v;
    size_t i;
    json_array_foreach(tmpls, i, v) {
        char *s = json_is_string(v) ? bee_task_render(json_string_value(v), sample, t->source) : NULL;
        if (!s) {
            json_decref(out);
            return NULL;
        }
        json_array_append_new(out, json_string(s));
        free(s);
    }
    return out;
}

/* Gold references: a template that is exactly "{field}" naming an array keeps every entry. */
static json_t *gold_refs(const bee_task *t, json_t *sample) {
    size_t n = strlen(t->gold);
    if (n > 2 && t->gold[0] == '{' && t->gold[n - 1] == '}' && !strchr(t->gold + 1, '{')) {
        char key[256];
        snprintf(key, sizeof key, "%.*s", (int)(n - 2), t->gold + 1);
        json_t *v = json_object_get(sample, key);
        if (json_is_array(v) && json_array_size(v)) return json_incref(v);
    }
    char *g = bee_task_render(t->gold, sample, t->source);
    if (!g) return NULL;
    json_t *one = json_pack("[s]", g);
    free(g);
    return one;
}

/* What scores one model's items: a loaded local model, the unigram table,
 * or the remote model's description. */
typedef struct {
    bee_model *m;
    bee_unigram *u;
    eval_model *em;
} scorer;

static bee_remote remote_of(const eval_model *em) {
    return (bee_remote){em->path, em->model, em->key_env, em->timeout_ms, em->retries};
}

/* Log-likelihood of the answer `opt` after `prompt`: 0, or 1 when the
 * (remote) model cannot score it, -1 on errors. */
static int sc_loglik(scorer *sc, const char *prompt, const char *opt, double *x, size_t *nt) {
    if (sc->u) return bee_unigram_logprob(sc->u, opt, x, nt);
    if (sc->m) return bee_eval_loglik(sc->m, prompt, opt, x, nt);
    bee_remote rm = remote_of(sc->em);
    return bee_remote_loglik(&rm, &sc->em->scoring, prompt, opt, 0, x, nt, &sc->em->why);
}

static const char *remote_scoring_name(bee_remote_scoring s) {
    return s == BEE_SCORE_BEE ? "remote log-likelihood (bee serve echo + bee_context: the local encoding)"
           : s == BEE_SCORE_OPENAI ? "remote log-likelihood (OpenAI echo of prompt + option as one text)"
                                   : "remote model: scored by generated text (no log-probs)";
}

/* 0, 1 when the model cannot score log-likelihoods (nothing is set), -1. */
static int score_mc(scorer *sc, const bee_task *t, json_t *sample, json_t *rec, size_t item) {
    json_t *opts = json_object_get(rec, "options"), *labels = render_list(t, t->labels, sample), *refs = gold_refs(t, sample);
    if (!labels || !refs) return json_decref(labels), json_decref(refs), -1;
    const char *gold = json_string_value(json_array_get(refs, 0));
    int gi = -1, best = 0, best_n = 0, rc = 0;
    json_t *ll = json_array(), *lln = json_array();
    double bv = -INFINITY, bvn = -INFINITY;
    for (size_t k = 0; rc == 0 && k < json_array_size(opts); k++) {
        double x;
        size_t nt;
        if (!strcmp(json_string_value(json_array_get(labels, k)), gold)) gi = (int)k;
        rc = sc_loglik(sc, json_string_value(json_object_get(rec, "prompt")), json_string_value(json_array_get(opts, k)), &x, &nt);
        double xn = nt ? x / (double)nt : x;
        json_array_append_new(ll, json_real(x));
        json_array_append_new(lln, json_real(xn));
        if (x > bv) bv = x, best = (int)k;
        if (xn > bvn) bvn = xn, best_n = (int)k;
    }
    if (rc == 0 && gi < 0) rc = bee_fail("%s: item %zu: gold '%s' is not one of the labels", t->source, item, gold);
    if (rc == 0) {
        json_object_set_new(rec, "scores", ll);
        json_object_set_new(rec, "scores_norm", lln);
        json_object_set(rec, "prediction", json_array_get(labels, (size_t)best));
        json_object_set(rec, "prediction_norm", json_array_get(labels, (size_t)best_n));
        json_object_set_new(rec, "gold", json_string(gold));
        json_object_set_new(rec, "metrics", json_pack("{s:f,s:f}", "acc", best == gi ? 1.0 : 0.0, "acc_norm", best_n == gi ? 1.0 : 0.0));
        if (sc->em) json_object_set_new(rec, "scoring", json_string(remote_scoring_name(sc->em->scoring)));
    } else {
        json_decref(ll);
        json_decref(lln);
    }
    json_decref(labels);
    json_decref(refs);
    return rc;
}

/* Generation: local greedy, remote completion; the unigram model generates nothing. */
static int score_gen(scorer *sc, const bee_task *t, json_t *sample, json_t *rec) {
    json_t *refs = gold_refs(t, sample), *ref;
    char *pred = NULL;
    if (!refs) return -1;
    const char *prompt = json_string_value(json_object_get(rec, "prompt"));
    bee_remote rm = {0};
    if (sc->em) rm = remote_of(sc->em);
    int rc = sc->u ? ((pred = strdup("")) ? 0 : bee_fail("out of memory"))
             : sc->m ? bee_eval_generate(sc->m, prompt, t->max_tokens, &pred)
                     : bee_remote_complete(&rm, prompt, t->max_tokens, &pred);
    double em = 0, f1 = 0, rl = 0;
    size_t i;
    json_array_foreach(refs, i, ref) { /* best over the references */
        const char *g = json_is_string(ref) ? json_string_value(ref) : "";
        if (rc) break;
        em = fmax(em, bee_metric_em(pred, g));
        f1 = fmax(f1, bee_metric_f1(pred, g));
        rl = fmax(rl, bee_metric_rouge_l(pred, g));
    }
    if (rc == 0) {
        json_t *pj = json_string(pred); /* NULL when a remote answer is not UTF-8 */
        json_object_set_new(rec, "prediction", pj ? pj : json_string(""));
        json_object_set(rec, "gold", json_array_size(refs) == 1 ? json_array_get(refs, 0) : refs);
        json_t *ms = json_object();
        if (t->metrics & BEE_METRIC_EM) json_object_set_new(ms, "em", json_real(em));
        if (t->metrics & BEE_METRIC_F1) json_object_set_new(ms, "f1", json_real(f1));
        if (t->metrics & BEE_METRIC_ROUGE_L) json_object_set_new(ms, "rouge_l", json_real(rl));
        json_object_set_new(rec, "metrics", ms);
        if (sc->u) json_object_set_new(rec, "note", json_string("unigram model: generates nothing"));
    }
    free(pred);
    json_decref(refs);
    return rc;
}

#define PPL_WINDOW 512

static int score_ppl(scorer *sc, const bee_task *t, json_t *rec) {
    const char *text = json_string_value(json_object_get(rec, "prompt"));
    bee_ppl_result pr = {0};
    if (sc->m) {
        if (bee_perplexity(sc->m, text, strlen(text), PPL_WINDOW, &pr, NULL, NULL)) return -1;
    } else {
        double ll = 0;
        int rc;
        if (sc->u) {
            rc = bee_unigram_logprob(sc->u, text, &ll, &pr.n_tokens);
        } else {
            bee_remote rm = remote_of(sc->em);
            rc = bee_remote_loglik(&rm, &sc->em->scoring, NULL, text, PPL_WINDOW, &ll, &pr.n_tokens, &sc->em->why);
            if (rc == 1)
                return bee_fail("%s: perplexity needs prompt log-probs, which the server does not return (%s)", t->source,
                                sc->em->why ? sc->em->why : "no echo");
        }
        if (rc) return -1;
        if (!pr.n_tokens) return bee_fail("%s: item text has no tokens to score", t->source);
        pr.nll = -ll;
        pr.ppl = exp(pr.nll / (double)pr.n_tokens);
        json_object_set_new(rec, "scoring", json_string(sc->u ? "unigram over eval tokens (not model tokens)"
                                                               : remote_scoring_name(sc->em->scoring)));
    }
    json_object_set_new(rec, "nll", json_real(pr.nll));
    json_object_set_new(rec, "tokens", json_integer((json_int_t)pr.n_tokens));
    json_object_set_new(rec, "metrics", json_pack("{s:f}", "ppl", pr.ppl));
    return 0;
}

static int starts_with_trimmed(const char *text, const char *opt) {
    while (*text == ' ' || *text == '\n' || *text == '\t') text++;
    return *opt && !strncmp(text, opt, strlen(opt));
}

/* Without per-token log-probs a remote model answers mc items by generation:
 * the option its text starts with, else the first option it contains. */
static int score_mc_remote(const eval_model *em, const bee_task *t, json_t *sample, json_t *rec, size_t item) {
    json_t *opts = json_object_get(rec, "options"), *labels = render_list(t, t->labels, sample), *refs = gold_refs(t, sample);
    bee_remote rm = remote_of(em);
    char *gen = NULL;
    int rc = labels && refs ? bee_remote_complete(&rm, json_string_value(json_object_get(rec, "prompt")), 16, &gen) : -1;
    const char *gold = json_string_value(json_array_get(refs, 0));
    int gi = -1, pick = -1;
    for (size_t k = 0; rc == 0 && k < json_array_size(opts); k++) {
        if (!strcmp(json_string_value(json_array_get(labels, k)), gold)) gi = (int)k;
        if (pick < 0 && starts_with_trimmed(gen, json_string_value(json_array_get(opts, k)))) pick = (int)k;
    }
    for (size_t k = 0; rc == 0 && pick < 0 && k < json_array_size(opts); k++)
        if (*json_string_value(json_array_get(opts, k)) && strstr(gen, json_string_value(json_array_get(opts, k)))) pick = (int)k;
    if (rc == 0 && gi < 0) rc = bee_fail("%s: item %zu: gold '%s' is not one of the labels", t->source, item, gold);
    if (rc == 0) {
        double acc = pick == gi ? 1.0 : 0.0;
        json_t *gj = json_string(gen);
        json_object_set_new(rec, "generated", gj ? gj : json_string(""));
        json_object_set(rec, "prediction", pick >= 0 ? json_array_get(labels, (size_t)pick) : json_null());
        json_object_set_new(rec, "gold", json_string(gold));
        char note[600];
        snprintf(note, sizeof note, "remote model: scored by generated text (no log-probs%s%.500s%s)", em->why ? ": the echo request got " : "",
                 em->why ? em->why : "", "");
        json_t *nj = json_string(note);
        json_object_set_new(rec, "note", nj ? nj : json_string("remote model: scored by generated text (no log-probs)"));
        json_object_set_new(rec, "metrics", json_pack("{s:f,s:f}", "acc", acc, "acc_norm", acc));
    }
    free(gen);
    json_decref(labels);
    json_decref(refs);
    return rc;
}

static int score_item(scorer *sc, const bee_task *t, json_t *sample, json_t *rec, size_t item) {
    if (t->type == BEE_TASK_GEN) return score_gen(sc, t, sample, rec);
    if (t->type == BEE_TASK_PPL) return score_ppl(sc, t, rec);
    int rc = score_mc(sc, t, sample, rec, item);
    if (rc == 1) rc = score_mc_remote(sc->em, t, sample, rec, item);
    return rc;
}

/* Loads the local model or the unigram table on first use. */
static int scorer_ready(eval_run *r, size_t mi, scorer *sc) {
    eval_model *em = &r->models[mi];
    sc->em = em->remote ? em : NULL;
    if (em->remote || sc->m || sc->u) return 0;
    int rc;
    if (em->kind == MODEL_UNIGRAM) {
        rc = bee_unigram_load(em->path, &sc->u);
    } else {
        rc = bee_model_load(em->path, &sc->m);
        if (rc == 0) rc = bee_model_set_threads(sc->m, r->o->threads);
        if (rc == 0 && em->lora && bee_model_apply_lora(sc->m, em->lora)) rc = bee_fail_prefix("lora %s: ", em->lora) ? -1 : -1;
    }
    if (rc) bee_fail_prefix("model '%s': ", em->name);
    return rc;
}

/* The record of item i from the cache (*cached = 1), or a new record with
 * its item, prompt and options, still to be scored under `key`. */
static json_t *item_prepare(eval_run *r, size_t mi, bee_task *t, size_t i, char *key, int *cached) {
    json_t *sample = json_array_get(t->samples, i);
    char *prompt = bee_task_prompt(t, i, r->o->seed);
    if (!prompt) return NULL;
    json_t *opts = t->type == BEE_TASK_MC ? render_list(t, t->choices, sample) : json_array();
    if (!opts) return free(prompt), NULL;
    sample_key(&r->models[mi], t, prompt, opts, key);
    json_t *rec = json_object_get(r->cache, key);
    *cached = rec != NULL;
    rec = rec ? json_incref(rec) : json_pack("{s:I,s:s,s:O}", "item", (json_int_t)i, "prompt", prompt, "options", opts);
    free(prompt);
    json_decref(opts);
    return rec;
}

/* The record of item i: from the cache, or computed (model loaded on demand). */
static json_t *item_record(eval_run *r, size_t mi, bee_task *t, size_t i, scorer *sc) {
    char key[17];
    int cached;
    json_t *rec = item_prepare(r, mi, t, i, key, &cached);
    if (!rec || cached) {
        r->st->cached += rec != NULL;
        return rec;
    }
    if (scorer_ready(r, mi, sc) || score_item(sc, t, json_array_get(t->samples, i), rec, i)) return json_decref(rec), NULL;
    cache_put(r, key, rec);
    r->st->computed++;
    return rec;
}

/* ---------------------------------------------------------------- concurrent remote requests
 * A window of items is prepared on the main thread (prompts, keys, cache
 * look-ups); `concurrency` workers score the missing ones, each with its
 * own requests (the HTTP client keeps no shared state); the main thread
 * then takes the records in item order, so the samples, the cache and the
 * scores are those of a serial run. */
typedef struct {
    json_t *rec;
    char key[17];
    size_t item;
    int cached;
    size_t dup;       /* 1 + the earlier item of the window with the same key (a serial run takes it from the cache) */
    atomic_int state; /* 0 pending, 1 scored, -1 failed */
    char *err;        /* the worker's error message (errors are per thread) */
} pend_item;

typedef struct {
    scorer *sc;
    const bee_task *t;
    pend_item *items;
    size_t n;
    atomic_size_t next;
    atomic_int stop;
} pend_job;

static void *pend_worker(void *arg) {
    pend_job *j = arg;
    while (!atomic_load(&j->stop)) {
        size_t k = atomic_fetch_add(&j->next, 1);
        if (k >= j->n) break;
        pend_item *it = &j->items[k];
        if (it->cached || it->dup) continue;
        scorer sc = *j->sc;
        if (score_item(&sc, j->t, json_array_get(j->t->samples, it->item), it->rec, it->item)) {
            it->err = strdup(bee_error_message());
            atomic_store(&it->state, -1);
            atomic_store(&j->stop, 1); /* items before this one are already taken and finish */
        } else {
            atomic_store(&it->state, 1);
        }
    }
    return NULL;
}

/* Scores items [i0, i1) of task t for remote model mi with n_threads
 * workers; appends the records in order to *out (n_out of them), stopping at
 * the first failed item (its error set, -1). */
static int score_window(eval_run *r, size_t mi, bee_task *t, scorer *sc, size_t i0, size_t i1, int n_threads, json_t **out,
                        size_t *n_out) {
    size_t n = i1 - i0;
    pend_item *items = calloc(n, sizeof *items);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    int rc = items && th ? 0 : bee_fail("out of memory");
    for (size_t k = 0; rc == 0 && k < n; k++) {
        items[k].item = i0 + k;
        atomic_init(&items[k].state, 0);
        if (!(items[k].rec = item_prepare(r, mi, t, i0 + k, items[k].key, &items[k].cached))) rc = -1;
        for (size_t j = 0; rc == 0 && !items[k].cached && j < k && !items[k].dup; j++)
            if (!items[j].cached && !items[j].dup && !strcmp(items[j].key, items[k].key)) items[k].dup = j + 1;
    }
    pend_job job = {sc, t, items, rc == 0 ? n : 0, 0, 0};
    int started = 0;
    for (; rc == 0 && started < n_threads; started++)
        if (pthread_create(&th[started], NULL, pend_worker, &job)) {
            if (started == 0) rc = bee_fail("cannot start a request thread");
            break;
        }
    for (int k = 0; k < started; k++) pthread_join(th[k], NULL);
    *n_out = 0;
    for (size_t k = 0; rc == 0 && k < n; k++) {
        pend_item *it = &items[k], *src = it->dup ? &items[it->dup - 1] : it;
        if (!it->cached && atomic_load(&src->state) != 1) {
            rc = atomic_load(&it->state) < 0 ? bee_fail("%s", it->err ? it->err : "out of memory") : bee_fail("item %zu not scored", it->item);
            break;
        }
        if (it->cached || it->dup) r->st->cached++;
        else cache_put(r, it->key, it->rec), r->st->computed++;
        out[(*n_out)++] = json_incref(src->rec);
    }
    for (size_t k = 0; items && k < n; k++) json_decref(items[k].rec), free(items[k].err);
    free(items);
    free(th);
    return rc;
}

/* ---------------------------------------------------------------- per model */

static size_t task_items(const eval_run *r, const bee_task *t) {
    size_t n = json_array_size(t->samples);
    return r->o->limit > 0 && (size_t)r->o->limit < n ? (size_t)r->o->limit : n;
}

static void sanitize(const char *s, char *out, size_t cap) {
    size_t k = 0;
    for (; *s && k + 1 < cap; s++) out[k++] = (*s == '/' || *s == ' ' || *s == '\\' || *s == '.') ? '_' : *s;
    out[k] = 0;
}

static int write_samples(eval_run *r, size_t mi, const bee_task *t, json_t *recs) {
    char dir[4096], path[4700], mn[256], tn[256];
    sanitize(r->models[mi].name, mn, sizeof mn);
    sanitize(t->name, tn, sizeof tn);
    snprintf(dir, sizeof dir, "%s/samples", r->o->out_dir);
    snprintf(path, sizeof path, "%s/%s__%s.jsonl", dir, mn, tn);
    if (bee_mkdir_p(dir)) return -1;
    bee_str s = {0};
    json_t *rec;
    size_t i;
    int rc = bee_str_append(&s, "", 0);
    json_array_foreach(recs, i, rec) {
        char *line = json_dumps(rec, JSON_COMPACT);
        if (!line || bee_str_printf(&s, "%s\n", line)) rc = -1;
        free(line);
    }
    if (rc == 0) rc = bee_write_file_atomic(path, s.s, s.n);
    bee_str_free(&s);
    return rc;
}

static void add_metrics(cell *c, json_t *rec) {
    json_t *ms = json_object_get(rec, "metrics");
    for (unsigned b = 0; b < N_METRICS; b++) {
        json_t *v = json_object_get(ms, bee_metric_name(1u << b));
        if (json_is_number(v)) bee_stat_add(&c->st[b], json_number_value(v));
    }
    c->n++;
}

static int run_model(eval_run *r, size_t mi) {
    scorer sc = {0};
    size_t total = 0, done = 0, computed0 = r->st->computed;
    for (size_t ti = 0; ti < r->n_tasks; ti++) total += task_items(r, &r->tasks[ti]);
    double t0 = now_s();
    int rc = 0, tty = isatty(2);
    eval_model *em = &r->models[mi];
    int conc = em->remote && r->o->concurrency > 1 ? r->o->concurrency : 1;
    size_t win = conc > 1 ? 16 * (size_t)conc : 1;
    json_t **batch = calloc(win, sizeof *batch);
    if (!batch) return bee_fail("out of memory");
    for (size_t ti = 0; rc == 0 && ti < r->n_tasks; ti++) {
        bee_task *t = &r->tasks[ti];
        json_t *recs = json_array();
        size_t n_items = task_items(r, t);
        for (size_t i = 0; rc == 0 && i < n_items;) {
            size_t got = 0;
            if (conc == 1 || (t->type != BEE_TASK_GEN && em->scoring == BEE_SCORE_UNKNOWN)) {
                /* serial; for a remote model also the item that finds out how the server scores */
                rc = (batch[0] = item_record(r, mi, t, i, &sc)) ? 0 : -1;
                got = rc == 0;
            } else {
                size_t end = i + win < n_items ? i + win : n_items;
                rc = scorer_ready(r, mi, &sc);
                if (rc == 0) rc = score_window(r, mi, t, &sc, i, end, conc, batch, &got);
                if (rc) { /* the records before the failed item are in the cache, as after a serial run */
                    for (size_t k = 0; k < got; k++) json_decref(batch[k]);
                    got = 0;
                }
            }
            if (rc) {
                rc = bee_fail_prefix("%s / %s: ", em->name, t->name);
                break;
            }
            for (size_t k = 0; k < got; k++, i++) {
                add_metrics(&r->cells[mi * r->n_tasks + ti], batch[k]);
                json_array_append_new(recs, batch[k]);
                done++;
                double el = now_s() - t0, rate = el > 0 ? (double)(r->st->computed - computed0) / el : 0;
                double eta = rate > 0 ? (double)(total - done) / rate : 0;
                if (!r->o->quiet && (tty || done == total))
                    fprintf(stderr, "%s%s: %zu/%zu items, %.2f items/s, ETA %.0fs%s", tty ? "\r" : "", em->name, done, total, rate,
                            eta, done == total ? "\n" : "");
            }
        }
        if (rc == 0) rc = write_samples(r, mi, t, recs);
        json_decref(recs);
    }
    free(batch);
    bee_model_free(sc.m);
    bee_unigram_free(sc.u);
    return rc;
}

/* ---------------------------------------------------------------- outputs */

/* The metric that ranks a task: its "primary" (default the first of its metrics in the fixed order). */
static unsigned primary(const bee_task *t) {
    for (unsigned b = 0; b < N_METRICS; b++)
        if (t->primary == (1u << b)) return b;
    return 0;
}

static double model_average(const eval_run *r, size_t mi, size_t *n_used) {
    double sum = 0;
    size_t n = 0;
    for (size_t ti = 0; ti < r->n_tasks; ti++) {
        unsigned b = primary(&r->tasks[ti]);
        if ((1u << b) == BEE_METRIC_PPL) continue; /* lower is better: not averaged with scores */
        sum += r->cells[mi * r->n_tasks + ti].st[b].mean;
        n++;
    }
    *n_used = n;
    return n ? sum / (double)n : 0;
}

static int write_out(const eval_run *r, const char *name, bee_str *s) {
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", r->o->out_dir, name);
    return bee_write_file_atomic(path, s->s ? s->s : "", s->n);
}

static int write_results(const eval_run *r) {
    json_t *root = json_object(), *models = json_array(), *tasks = json_array();
    for (size_t ti = 0; ti < r->n_tasks; ti++) {
        const bee_task *t = &r->tasks[ti];
        json_array_append_new(tasks, json_pack("{s:s,s:s,s:s,s:i}", "name", t->name, "type",
                                               t->type == BEE_TASK_MC ? "mc" : t->type == BEE_TASK_GEN ? "gen" : "ppl",
                                               "primary", bee_metric_name(1u << primary(t)), "shots", t->shots));
    }
    for (size_t mi = 0; mi < r->n_models; mi++) {
        json_t *per = json_object();
        for (size_t ti = 0; ti < r->n_tasks; ti++) {
            const cell *c = &r->cells[mi * r->n_tasks + ti];
            json_t *ms = json_object();
            for (unsigned b = 0; b < N_METRICS; b++)
                if (r->tasks[ti].metrics & (1u << b))
                    json_object_set_new(ms, bee_metric_name(1u << b), json_pack("{s:f,s:f}", "mean", c->st[b].mean, "se", bee_stat_se(&c->st[b])));
            json_object_set_new(per, r->tasks[ti].name, json_pack("{s:I,s:o}", "n", (json_int_t)c->n, "metrics", ms));
        }
        size_t nu;
        double avg = model_average(r, mi, &nu);
        json_array_append_new(models, json_pack("{s:s,s:s,s:f,s:o}", "name", r->models[mi].name, "path", r->models[mi].path,
                                                "average", avg, "tasks", per));
    }
    json_object_set_new(root, "tasks", tasks);
    json_object_set_new(root, "models", models);
    json_object_set_new(root, "seed", json_integer((json_int_t)r->o->seed));
    json_object_set_new(root, "limit", json_integer(r->o->limit));
    char *s = json_dumps(root, JSON_INDENT(2));
    json_decref(root);
    if (!s) return bee_fail("out of memory");
    bee_str b = {s, strlen(s), strlen(s) + 1};
    int rc = bee_str_append(&b, "\n", 1) || write_out(r, "results.json", &b);
    bee_str_free(&b);
    return rc ? -1 : 0;
}

static const eval_run *g_sort_run; /* qsort has no user pointer in C11 */

static int by_average(const void *a, const void *b) {
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b, n;
    double x = model_average(g_sort_run, ia, &n), y = model_average(g_sort_run, ib, &n);
    return x < y ? 1 : x > y ? -1 : (ia > ib) - (ia < ib);
}

static int write_tables(const eval_run *r, const size_t *order) {
    bee_str md = {0}, csv = {0};
    bee_str_appendz(&md, "| rank | model | average |");
    bee_str_appendz(&csv, "rank,model,average");
    for (size_t ti = 0; ti < r->n_tasks; ti++) {
        const char *mn = bee_metric_name(1u << primary(&r->tasks[ti]));
        bee_str_printf(&md, " %s (%s) |", r->tasks[ti].name, mn);
        bee_str_printf(&csv, ",%s:%s,%s:%s_se", r->tasks[ti].name, mn, r->tasks[ti].name, mn);
    }
    bee_str_appendz(&md, "\n|---:|---|---:|");
    bee_str_appendz(&csv, "\n");
    for (size_t ti = 0; ti < r->n_tasks; ti++) bee_str_appendz(&md, "---:|");
    bee_str_appendz(&md, "\n");
    for (size_t k = 0; k < r->n_models; k++) {
        size_t mi = order[k], nu;
        double avg = model_average(r, mi, &nu);
        bee_str_printf(&md, "| %zu | %s | %.2f |", k + 1, r->models[mi].name, 100 * avg);
        bee_str_printf(&csv, "%zu,\"%s\",%.4f", k + 1, r->models[mi].name, 100 * avg);
        for (size_t ti = 0; ti < r->n_tasks; ti++) {
            const bee_stat *s = &r->cells[mi * r->n_tasks + ti].st[primary(&r->tasks[ti])];
            double scale = (r->tasks[ti].metrics & BEE_METRIC_PPL) ? 1 : 100;
            bee_str_printf(&md, " %.2f ± %.2f |", scale * s->mean, scale * bee_stat_se(s));
            bee_str_printf(&csv, ",%.4f,%.4f", scale * s->mean, scale * bee_stat_se(s));
        }
        bee_str_appendz(&md, "\n");
        bee_str_appendz(&csv, "\n");
    }
    bee_str_appendz(&md, "\nScores in %, ± one standard error; average over the non-perplexity tasks.\n");
    int rc = write_out(r, "leaderboard.md", &md) || write_out(r, "leaderboard.csv", &csv) ? -1 : 0;
    bee_str_free(&md);
    bee_str_free(&csv);
    return rc;
}

/* Horizontal bars of the average score, best first; the axis is 0–100 %. */
static int write_svg(const eval_run *r, const size_t *order) {
    const int left = 180, width = 420, bar = 22, gap = 10, top = 40;
    int h = top + (int)r->n_models * (bar + gap) + 30;
    bee_str s = {0};
    bee_str_printf(&s, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"13\">\n",
                   left + width + 80, h);
    bee_str_printf(&s, "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n<text x=\"10\" y=\"22\" font-size=\"15\">bee eval: average score (%%)</text>\n");
    for (int g = 0; g <= 100; g += 25)
        bee_str_printf(&s, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#ddd\"/><text x=\"%d\" y=\"%d\" fill=\"#666\" text-anchor=\"middle\">%d</text>\n",
                       left + width * g / 100, top - 6, left + width * g / 100, h - 24, left + width * g / 100, h - 8, g);
    for (size_t k = 0; k < r->n_models; k++) {
        size_t mi = order[k], nu;
        double avg = model_average(r, mi, &nu);
        int y = top + (int)k * (bar + gap);
        bee_str_printf(&s, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">", left - 8, y + bar - 6);
        bee_str_append_xml(&s, r->models[mi].name);
        bee_str_printf(&s, "</text><rect class=\"bar\" x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#4a7bd0\"/>"
                           "<text x=\"%.1f\" y=\"%d\">%.2f</text>\n",
                       left, y, width * avg, bar, left + width * avg + 6, y + bar - 6, 100 * avg);
    }
    bee_str_appendz(&s, "</svg>\n");
    int rc = write_out(r, "leaderboard.svg", &s);
    bee_str_free(&s);
    return rc;
}

static int write_outputs(eval_run *r) {
    size_t *order = malloc((r->n_models + 1) * sizeof *order);
    if (!order) return bee_fail("out of memory");
    for (size_t i = 0; i < r->n_models; i++) order[i] = i;
    g_sort_run = r;
    qsort(order, r->n_models, sizeof *order, by_average);
    int rc = write_results(r) || write_tables(r, order) || write_svg(r, order) ? -1 : 0;
    free(order);
    return rc;
}

/* ---------------------------------------------------------------- entry */

static int load_tasks(eval_run *r) {
    char *list = strdup(r->o->tasks), *save = NULL;
    int rc = list ? 0 : bee_fail("out of memory");
    size_t cap = 1;
    for (const char *p = r->o->tasks; *p; p++) cap += *p == ',';
    r->tasks = calloc(cap, sizeof *r->tasks);
    for (char *tok = list ? strtok_r(list, ",", &save) : NULL; rc == 0 && tok; tok = strtok_r(NULL, ",", &save)) {
        rc = bee_task_load_ex(&r->tasks[r->n_tasks], tok, r->o->task_dir, r->o->data_dir, r->o->corpus_dir, r->o->shots);
        if (rc == 2) { /* data not there: the other tasks still run */
            fprintf(stderr, "eval: skipping task '%s': %s\n", tok, bee_error_message());
            bee_task_free(&r->tasks[r->n_tasks]);
            rc = 0;
            continue;
        }
        r->n_tasks++;
        if (rc == 0 && json_array_size(r->tasks[r->n_tasks - 1].samples) == 0)
            rc = bee_fail("task '%s' has no samples", tok);
    }
    if (rc == 0 && r->n_tasks == 0) rc = bee_fail("no tasks to run (none given, or the data of every task is missing)");
    free(list);
    return rc;
}

static void run_free(eval_run *r) {
    for (size_t i = 0; i < r->n_models; i++)
        free(r->models[i].name), free(r->models[i].path), free(r->models[i].model), free(r->models[i].key_env),
            free(r->models[i].lora), free(r->models[i].why);
    free(r->models);
    for (size_t i = 0; i < r->n_tasks; i++) bee_task_free(&r->tasks[i]);
    free(r->tasks);
    free(r->cells);
    json_decref(r->cache);
    if (r->cache_f) fclose(r->cache_f);
}

int bee_eval_run(const bee_eval_opts *o, bee_eval_stats *st) {
    eval_run r;
    memset(&r, 0, sizeof r);
    memset(st, 0, sizeof *st);
    r.o = o;
    r.st = st;
    int rc = o->concurrency < 0 || o->concurrency > BEE_EVAL_MAX_CONCURRENCY
                 ? bee_fail("concurrency %d: expected 1..%d requests in flight", o->concurrency, BEE_EVAL_MAX_CONCURRENCY)
                 : 0;
    if (rc == 0) rc = load_models(&r, o->models_path);
    if (rc == 0) rc = load_tasks(&r);
    if (rc == 0 && !(r.cells = calloc(r.n_models * r.n_tasks, sizeof *r.cells))) rc = bee_fail("out of memory");
    if (rc == 0 && bee_mkdir_p(o->out_dir)) rc = -1;
    if (rc == 0) rc = cache_open(&r);
    for (size_t mi = 0; rc == 0 && mi < r.n_models; mi++) rc = run_model(&r, mi);
    if (rc == 0) rc = write_outputs(&r);
    run_free(&r);
    return rc;
}
