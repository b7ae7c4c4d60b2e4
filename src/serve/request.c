#include "serve/request.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer/dict.h"
#include "util/error.h"

/* ================================================================ errors */

int bee_api_error_set(bee_api_error *e, int status, const char *type, const char *param, const char *fmt, ...) {
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return -1;
}

/* Messages may quote request bytes (a JSON parser's error text): invalid
 * UTF-8 becomes '?' so the reply is always valid JSON. */
static void utf8_clean(const char *in, char *out, size_t cap) {
    size_t n = strlen(in), o = 0;
    for (size_t i = 0; i < n && o + 5 < cap;) {
        int l = bee_utf8_len((const unsigned char *)in + i, n - i);
        if (l <= 0) {
            out[o++] = '?';
            i++;
            continue;
        }
        memcpy(out + o, in + i, (size_t)l);
        o += (size_t)l, i += (size_t)l;
    }
    out[o] = 0;
}

char *bee_api_error_json(const bee_api_error *e) {
    char msg[sizeof e->message + 8], param[sizeof e->param + 8];
    utf8_clean(e->message, msg, sizeof msg);
    utf8_clean(e->param, param, sizeof param);
    json_t *o = json_pack("{s:{s:s,s:s,s:o,s:o}}", "error", "message", msg, "type", e->type ? e->type : "error",
                          "param", param[0] ? json_string(param) : json_null(), "code", json_null());
    char *s = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    return s;
}

static int bad(bee_api_error *e, const char *param, const char *fmt, ...) BEE_PRINTF(3, 4);
static int bad(bee_api_error *e, const char *param, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bee_api_error_set(e, 400, "invalid_request_error", param, "%s", msg);
}

/* ================================================================ text */

int bee_unescape_feed(bee_unescape *u, const char *s, size_t n, int final, bee_str *out) {
    size_t i = 0;
    if (u->held && n > 0) {
        u->held = 0;
        if (bee_str_append(out, "<", 1)) return -1;
        if (s[0] == '<') i = 1;
    }
    for (; i < n; i++) {
        if (s[i] == '<' && i + 1 == n) {
            u->held = 1;
            break;
        }
        if (bee_str_append(out, &s[i], 1)) return -1;
        if (s[i] == '<' && s[i + 1] == '<') i++;
    }
    if (final && u->held) {
        u->held = 0;
        if (bee_str_append(out, "<", 1)) return -1;
    }
    return 0;
}

/* Appends user text escaped for the tokenizer ("<" is literal). */
static int put_text(bee_str *s, const char *t, size_t n) { return bee_text_escape(t, n, s); }

/* ================================================================ fields */

/* Optional number in [lo, hi]; 0 when absent or null. */
static int get_number(json_t *body, const char *key, double lo, double hi, double *out, bee_api_error *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return bad(e, key, "'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return bad(e, key, "'%s' must be in [%g, %g] (got %g)", key, lo, hi, x);
    *out = x;
    return 0;
}

static int get_int(json_t *body, const char *key, long long lo, long long hi, long long *out, int *set,
                   bee_api_error *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return bad(e, key, "'%s' must be an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi) return bad(e, key, "'%s' must be in [%lld, %lld] (got %lld)", key, lo, hi, x);
    *out = x;
    if (set) *set = 1;
    return 0;
}

static int get_bool(json_t *body, const char *key, int *out, bee_api_error *e) {
    json_t *v = json_object_get(body, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return bad(e, key, "'%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

static int add_stop(bee_api_req *r, size_t *k, json_t *v, bee_api_error *e) {
    if (!json_is_string(v) || json_string_length(v) == 0) return bad(e, "stop", "'stop' entries must be non-empty strings");
    if (*k >= BEE_API_MAX_STOP) return bad(e, "stop", "at most %d stop strings", BEE_API_MAX_STOP);
    bee_str s = {0};
    if (put_text(&s, json_string_value(v), json_string_length(v))) return bad(e, "stop", "out of memory");
    r->stops[(*k)++] = bee_str_take(&s);
    return 0;
}

static int get_stops(json_t *body, bee_api_req *r, bee_api_error *e) {
    json_t *v = json_object_get(body, "stop");
    r->stops = calloc(BEE_API_MAX_STOP + 1, sizeof *r->stops);
    if (!r->stops) return bad(e, "stop", "out of memory");
    r->sp.stop = (const char *const *)r->stops;
    if (!v || json_is_null(v)) return 0;
    size_t k = 0;
    if (json_is_string(v)) return add_stop(r, &k, v, e);
    if (!json_is_array(v)) return bad(e, "stop", "'stop' must be a string or an array of strings");
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x) if (add_stop(r, &k, x, e)) return -1;
    return 0;
}

/* OpenAI's "stream_options" (only with "stream": true): include_usage asks
 * for a last chunk carrying usage and no choices. Without it the stream has
 * no such chunk, since clients read choices[0] of every chunk. */
static int get_stream_options(json_t *body, bee_api_req *r, bee_api_error *e) {
    json_t *v = json_object_get(body, "stream_options");
    if (!v || json_is_null(v)) return 0;
    if (!r->stream) return bad(e, "stream_options", "'stream_options' is only allowed with \"stream\": true");
    if (!json_is_object(v)) return bad(e, "stream_options", "'stream_options' must be an object");
    json_t *u = json_object_get(v, "include_usage");
    if (u && !json_is_null(u) && !json_is_boolean(u))
        return bad(e, "stream_options", "'stream_options.include_usage' must be true or false");
    r->stream_usage = json_is_true(u);
    return 0;
}

/* Sampling fields shared by every generation endpoint. */
static int get_sampling(json_t *body, bee_api_req *r, bee_api_error *e) {
    double t = 1.0, tp = 1.0, mp = 0, pp = 0, fp = 0, rp = 1.0;
    long long k = 0, seed = 0, n = 1;
    if (get_number(body, "temperature", 0, 100, &t, e) || get_number(body, "top_p", 1e-9, 1, &tp, e) ||
        get_number(body, "min_p", 0, 0.999999, &mp, e) || get_number(body, "presence_penalty", -2, 2, &pp, e) ||
        get_number(body, "frequency_penalty", -2, 2, &fp, e) ||
        get_number(body, "repetition_penalty", 1e-6, 100, &rp, e) ||
        get_int(body, "top_k", 0, 1 << 30, &k, NULL, e) ||
        get_int(body, "seed", -(1LL << 62), 1LL << 62, &seed, &r->seed_set, e) ||
        get_int(body, "n", 1, BEE_API_MAX_N, &n, NULL, e) || get_bool(body, "stream", &r->stream, e) ||
        get_stream_options(body, r, e) ||
        get_bool(body, "ignore_eos", &r->sp.ignore_eos, e) ||
        get_stops(body, r, e))
        return -1;
    r->sp.temperature = (float)t, r->sp.top_p = (float)tp, r->sp.min_p = (float)mp;
    r->sp.presence_penalty = (float)pp, r->sp.frequency_penalty = (float)fp, r->sp.repetition_penalty = (float)rp;
    r->sp.top_k = (int)k, r->sp.seed = (uint64_t)seed, r->n = (int)n;
    return 0;
}

static int get_max_tokens(json_t *body, const char *key, int dflt, bee_api_req *r, bee_api_error *e) {
    long long mt = dflt;
    if (get_int(body, key, 0, 1 << 24, &mt, &r->max_tokens_set, e)) return -1;
    r->max_tokens = (int)mt;
    return 0;
}

/* ================================================================ prompts */

static int text_dict(const char *escaped, bee_api_req *r, bee_api_error *e, const char *param) {
    r->data = bee_dict_from_text(escaped);
    return r->data ? 0 : bad(e, param, "out of memory");
}

/* "prompt": a string, or an array holding one string. */
static int get_prompt(json_t *body, bee_api_req *r, bee_api_error *e) {
    json_t *p = json_object_get(body, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1) p = json_array_get(p, 0);
    if (!p) return bad(e, "prompt", "'prompt' is required");
    if (!json_is_string(p)) return bad(e, "prompt", "'prompt' must be a string (or an array of one string)");
    bee_str s = {0};
    if (put_text(&s, json_string_value(p), json_string_length(p))) return bad(e, "prompt", "out of memory");
    int rc = text_dict(s.s ? s.s : "", r, e, "prompt");
    bee_str_free(&s);
    return rc;
}

/* Message content: a string or an array of {"type":"text","text":...} parts. */
static int put_content(bee_str *s, json_t *c, size_t i, bee_api_error *e) {
    char param[64];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    if (json_is_string(c)) return put_text(s, json_string_value(c), json_string_length(c)) ? bad(e, param, "out of memory") : 0;
    if (!json_is_array(c)) return bad(e, param, "'%s' must be a string or an array of text parts", param);
    size_t k;
    json_t *part;
    json_array_foreach(c, k, part) {
        json_t *t = json_object_get(part, "text");
        if (!json_is_string(t)) return bad(e, param, "'%s[%zu]' must be {\"type\":\"text\",\"text\":\"...\"}", param, k);
        if (put_text(s, json_string_value(t), json_string_length(t))) return bad(e, param, "out of memory");
    }
    return 0;
}

/* The CPM-Bee dialogue form the chat command uses: 用户：…<sep>AI：…<sep>…AI： */
static int get_messages(json_t *body, bee_api_req *r, bee_api_error *e) {
    json_t *msgs = json_object_get(body, "messages");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return bad(e, "messages", "'messages' must be a non-empty array");
    bee_str s = {0};
    size_t i;
    json_t *m;
    int rc = 0;
    json_array_foreach(msgs, i, m) {
        char param[64];
        snprintf(param, sizeof param, "messages[%zu].role", i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) {
            rc = bad(e, param, "'%s' must be \"system\", \"user\" or \"assistant\"", param);
            break;
        }
        const char *prefix = strcmp(role, "user") == 0 ? "用户：" : strcmp(role, "assistant") == 0 ? "AI：" : strcmp(role, "system") == 0 ? "" : NULL;
        if (!prefix) {
            rc = bad(e, param, "'%s' must be \"system\", \"user\" or \"assistant\" (got \"%s\")", param, role);
            break;
        }
        if (bee_str_appendz(&s, prefix) || put_content(&s, json_object_get(m, "content"), i, e) ||
            bee_str_appendz(&s, "<sep>")) {
            if (!e->message[0]) bad(e, "messages", "out of memory");
            rc = -1;
            break;
        }
    }
    if (rc == 0 && bee_str_appendz(&s, "AI：")) rc = bad(e, "messages", "out of memory");
    if (rc == 0) rc = text_dict(s.s, r, e, "messages");
    bee_str_free(&s);
    return rc;
}

/* ================================================================ endpoints */

static int parse_completion(json_t *body, bee_api_req *r, bee_api_error *e) {
    long long lp = -1;
    if (get_prompt(body, r, e) || get_sampling(body, r, e) || get_max_tokens(body, "max_tokens", 16, r, e) ||
        get_int(body, "logprobs", 0, BEE_API_MAX_LOGPROBS, &lp, NULL, e) || get_bool(body, "echo", &r->echo, e))
        return -1;
    r->logprobs = (int)lp;
    json_t *ctx = json_object_get(body, "bee_context"), *p = json_object_get(body, "prompt");
    long long win = 0;
    if (get_int(body, "bee_window", 8, 1 << 20, &win, NULL, e)) return -1;
    r->window = (int)win;
    if (ctx && !json_is_null(ctx) && !json_is_string(ctx)) return bad(e, "bee_context", "'bee_context' must be a string");
    if (!r->echo) {
        if ((ctx && !json_is_null(ctx)) || win) return bad(e, ctx ? "bee_context" : "bee_window", "'bee_context' and 'bee_window' need \"echo\": true");
        return 0;
    }
    /* echo: scoring only (no generation after the prompt) */
    if (!r->max_tokens_set || r->max_tokens != 0)
        return bad(e, "max_tokens", "\"echo\": true scores the prompt and needs \"max_tokens\": 0 (echo with generation is not supported)");
    if (r->stream) return bad(e, "stream", "\"echo\": true does not stream");
    if (r->n != 1) return bad(e, "n", "\"echo\": true returns one choice ('n' must be 1)");
    if (json_is_array(p)) p = json_array_get(p, 0);
    r->echo_text = strndup(json_string_value(p), json_string_length(p));
    if (json_is_string(ctx)) r->context = strndup(json_string_value(ctx), json_string_length(ctx));
    if (!r->echo_text || (json_is_string(ctx) && !r->context)) return bad(e, "prompt", "out of memory");
    if (!*r->echo_text) return bad(e, "prompt", "\"echo\": true needs a non-empty 'prompt' to score");
    return 0;
}

static int parse_chat(json_t *body, bee_api_req *r, bee_api_error *e) {
    if (get_messages(body, r, e) || get_sampling(body, r, e) || get_max_tokens(body, "max_tokens", 256, r, e))
        return -1;
    if (json_object_get(body, "max_completion_tokens") && get_max_tokens(body, "max_completion_tokens", 256, r, e))
        return -1;
    int lp = 0;
    long long top = 0;
    int top_set = 0;
    if (get_bool(body, "logprobs", &lp, e) || get_int(body, "top_logprobs", 0, BEE_API_MAX_LOGPROBS, &top, &top_set, e))
        return -1;
    if (top_set && !lp) return bad(e, "top_logprobs", "'top_logprobs' needs \"logprobs\": true");
    r->logprobs = lp ? (int)top : -1;
    return 0;
}

/* The decoding fields of /v1/cpmbee and /v1/ask: beam search (default) or sampling. */
static int get_decoding(json_t *body, const char *endpoint, bee_api_req *r, bee_api_error *e) {
    long long beam = 0;
    const char *mode = json_string_value(json_object_get(body, "mode"));
    if (json_object_get(body, "mode") && (!mode || (strcmp(mode, "beam") && strcmp(mode, "sample"))))
        return bad(e, "mode", "'mode' must be \"beam\" or \"sample\"");
    if (get_sampling(body, r, e) || get_max_tokens(body, "max_tokens", 100, r, e) ||
        get_int(body, "beam_size", 1, 64, &beam, NULL, e))
        return -1;
    if (r->stream) return bad(e, "stream", "%s does not stream", endpoint);
    if (r->n != 1) return bad(e, "n", "%s returns one result ('n' must be 1)", endpoint);
    int sampling = (mode && strcmp(mode, "sample") == 0) || (!mode && !beam && json_object_get(body, "temperature"));
    r->beam = sampling ? 0 : (beam ? (int)beam : 3);
    if (sampling && beam) return bad(e, "beam_size", "'beam_size' cannot be combined with sampling");
    return 0;
}

/* {"data": DICT, "beam_size": K | sampling fields, "max_tokens": N} */
static int parse_cpmbee(json_t *body, bee_api_req *r, bee_api_error *e) {
    json_t *d = json_object_get(body, "data");
    if (!json_is_object(d)) return bad(e, "data", "'data' must be a CPM-Bee dict (a JSON object with \"<ans>\")");
    if (!json_object_get(d, "<ans>")) return bad(e, "data", "'data' has no \"<ans>\" field to fill");
    if (get_decoding(body, "/v1/cpmbee", r, e)) return -1;
    r->data = json_deep_copy(d);
    return r->data ? 0 : bad(e, "data", "out of memory");
}

/* The query text of /v1/search ("query") or /v1/ask ("question"), and "k". */
static int get_query(json_t *body, const char *key, bee_api_req *r, bee_api_error *e) {
    json_t *q = json_object_get(body, key);
    if (!q) return bad(e, key, "'%s' is required", key);
    if (!json_is_string(q)) return bad(e, key, "'%s' must be a string", key);
    const char *t = json_string_value(q);
    size_t n = json_string_length(q);
    if (n > BEE_API_MAX_QUERY) return bad(e, key, "'%s' is %zu bytes; the limit is %d", key, n, BEE_API_MAX_QUERY);
    if (memchr(t, 0, n)) return bad(e, key, "'%s' contains a NUL character", key);
    size_t i = 0;
    while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\n' || t[i] == '\r')) i++;
    if (i == n) return bad(e, key, "'%s' is empty", key);
    long long k = 5;
    if (get_int(body, "k", 1, BEE_API_MAX_K, &k, NULL, e)) return -1;
    r->k = (int)k;
    r->content = strndup(t, n);
    return r->content ? 0 : bad(e, key, "out of memory");
}

/* {"question": TEXT, "k": N} + decoding fields; the dict is built once the passages are known. */
static int parse_ask(json_t *body, bee_api_req *r, bee_api_error *e) {
    return get_query(body, "question", r, e) || get_decoding(body, "/v1/ask", r, e) ? -1 : 0;
}

/* {"content": TEXT} tokenizes raw text; {"prompt"} / {"messages"} / {"data"}
 * give the model input the matching endpoint would build. */
static int parse_tokenize(json_t *body, bee_api_req *r, bee_api_error *e) {
    json_t *c = json_object_get(body, "content");
    if (c) {
        if (!json_is_string(c)) return bad(e, "content", "'content' must be a string");
        r->content = strndup(json_string_value(c), json_string_length(c));
        return r->content ? 0 : bad(e, "content", "out of memory");
    }
    if (json_object_get(body, "prompt")) return get_prompt(body, r, e);
    if (json_object_get(body, "messages")) return get_messages(body, r, e);
    if (json_object_get(body, "data")) return parse_cpmbee(body, r, e);
    return bad(e, "content", "give one of 'content', 'prompt', 'messages' or 'data'");
}

int bee_api_parse(bee_api_kind kind, const char *body, size_t len, bee_api_req *r, bee_api_error *e) {
    memset(r, 0, sizeof *r);
    memset(e, 0, sizeof *e);
    r->kind = kind;
    r->logprobs = -1;
    r->n = 1;
    bee_sample_params_default(&r->sp);
    json_error_t jerr;
    json_t *b = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!b) return bad(e, "", "invalid JSON at line %d column %d: %s", jerr.line, jerr.column, jerr.text);
    int rc;
    if (!json_is_object(b)) rc = bad(e, "", "the request body must be a JSON object");
    else if (json_object_get(b, "model") && !json_is_string(json_object_get(b, "model")))
        rc = bad(e, "model", "'model' must be a string");
    else if (kind == BEE_API_COMPLETION) rc = parse_completion(b, r, e);
    else if (kind == BEE_API_CHAT) rc = parse_chat(b, r, e);
    else if (kind == BEE_API_CPMBEE) rc = parse_cpmbee(b, r, e);
    else if (kind == BEE_API_SEARCH) rc = get_query(b, "query", r, e);
    else if (kind == BEE_API_ASK) rc = parse_ask(b, r, e);
    else rc = parse_tokenize(b, r, e);
    json_decref(b);
    if (rc) bee_api_req_free(r);
    return rc;
}

void bee_api_req_free(bee_api_req *r) {
    json_decref(r->data);
    free(r->content);
    free(r->echo_text);
    free(r->context);
    for (size_t i = 0; r->stops && r->stops[i]; i++) free(r->stops[i]);
    free(r->stops);
    memset(r, 0, sizeof *r);
}
