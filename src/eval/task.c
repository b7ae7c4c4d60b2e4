/* Task definitions (JSON), built-in tasks, prompt rendering and few-shot draws. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval/eval.h"
#include "util/buf.h"
#include "util/error.h"
#include "util/file.h"

static const struct {
    unsigned bit;
    const char *name;
} k_metrics[] = {{BEE_METRIC_ACC, "acc"}, {BEE_METRIC_ACC_NORM, "acc_norm"}, {BEE_METRIC_EM, "em"},
                 {BEE_METRIC_F1, "f1"},   {BEE_METRIC_ROUGE_L, "rouge_l"},   {BEE_METRIC_PPL, "ppl"}};

const char *bee_metric_name(unsigned bit) {
    for (size_t i = 0; i < sizeof k_metrics / sizeof k_metrics[0]; i++)
        if (k_metrics[i].bit == bit) return k_metrics[i].name;
    return NULL;
}

/* Built-in tasks need no files: their samples are generated here. */
static const char *k_sanity =
    "{\"name\":\"sanity\",\"type\":\"mc\",\"reader\":\"builtin\",\"template\":\"{question}\\n答案：\","
    "\"choices\":[\"{A}\",\"{B}\",\"{C}\",\"{D}\"],\"labels\":[\"A\",\"B\",\"C\",\"D\"],\"gold\":\"{answer}\","
    "\"target\":\"{gold_text}\",\"metrics\":[\"acc\",\"acc_norm\"],\"shots\":1}";
static const char *k_sanity_gen =
    "{\"name\":\"sanity-gen\",\"type\":\"gen\",\"reader\":\"builtin\",\"template\":\"{question}\\n答案：\","
    "\"gold\":\"{gold_text}\",\"metrics\":[\"em\",\"f1\",\"rouge_l\"],\"max_tokens\":6,\"shots\":0}";

static json_t *builtin_samples(void) {
    static const char *words[] = {"北京", "上海", "天气", "苹果", "学生", "河流", "音乐", "春天", "老师", "月亮"};
    json_t *out = json_array();
    for (int i = 0; i < 20; i++) {
        int w = i % 10, gold = (i * 7) % 4;
        json_t *o = json_object();
        json_object_set_new(o, "question", json_sprintf("把“%s”重复一遍。", words[w]));
        for (int k = 0; k < 4; k++) {
            char key[2] = {(char)('A' + k), 0};
            json_object_set_new(o, key, json_string(words[k == gold ? w : (w + k + 3) % 10]));
        }
        char ans[2] = {(char)('A' + gold), 0};
        json_object_set_new(o, "answer", json_string(ans));
        json_object_set_new(o, "gold_text", json_string(words[w]));
        json_array_append_new(out, o);
    }
    return out;
}

static json_t *read_one(const bee_task *t, const char *reader, const char *path) {
    if (!strcmp(reader, "csv")) return bee_read_csv(path);
    if (!strcmp(reader, "gaokao")) return bee_read_gaokao(path);
    if (!strcmp(reader, "squad")) return bee_read_squad(path);
    if (!strcmp(reader, "jsonl")) return bee_read_jsonl(path);
    if (!strcmp(reader, "tsv")) return bee_read_tsv(path, json_object_get(t->def, "columns"));
    if (!strcmp(reader, "nextline")) {
        const char *fmt = json_string_value(json_object_get(t->def, "format"));
        json_t *cl = json_object_get(t->def, "context_lines"), *nd = json_object_get(t->def, "distractors");
        json_t *sl = json_object_get(t->def, "same_length"), *sd = json_object_get(t->def, "seed");
        json_t *jn = json_object_get(t->def, "joiner");
        bee_nextline_opts o = {fmt && !strcmp(fmt, "poems"), cl ? (int)json_integer_value(cl) : 2,
                               nd ? (int)json_integer_value(nd) : 3, json_is_true(sl), sd ? (uint64_t)json_integer_value(sd) : 1,
                               json_string_value(jn)};
        if (jn && !json_is_string(jn))
            return bee_fail("%s: \"joiner\" must be a string", t->source) ? NULL : NULL;
        if (!fmt || (strcmp(fmt, "poems") && strcmp(fmt, "lines")))
            return bee_fail("%s: \"format\" must be \"poems\" or \"lines\" for the nextline reader", t->source) ? NULL : NULL;
        if (o.context_lines < 1 || o.context_lines > 64 || o.distractors < 0 || o.distractors > 15 ||
            (sd && !json_is_integer(sd)) || (sl && !json_is_boolean(sl)))
            return bee_fail("%s: nextline needs \"context_lines\" in [1, 64], \"distractors\" in [0, 15], integer \"seed\", "
                            "boolean \"same_length\"", t->source) ? NULL : NULL;
        return bee_read_nextline(path, &o);
    }
    if (!strcmp(reader, "chunks")) {
        json_t *cc = json_object_get(t->def, "chunk_chars");
        if (cc && (!json_is_integer(cc) || json_integer_value(cc) < 1))
            return bee_fail("%s: \"chunk_chars\" must be a positive integer", t->source) ? NULL : NULL;
        return bee_read_chunks(path, cc ? (size_t)json_integer_value(cc) : 2000);
    }
    return bee_fail("%s: unknown reader '%s' (csv, gaokao, squad, jsonl, tsv, nextline, chunks)", t->source, reader) ? NULL : NULL;
}

/* "path" is a string or an array of strings, each relative to data_dir (to
 * the corpus folder for "root": "corpus"). A missing file sets *missing. */
static json_t *read_paths(const bee_task *t, const char *reader, json_t *paths, const char *data_dir, int *missing) {
    if (!strcmp(reader, "builtin")) return builtin_samples();
    json_t *list = json_is_string(paths) ? json_pack("[O]", paths) : json_incref(paths), *p, *out = json_array();
    size_t i;
    if (!json_array_size(list)) {
        json_decref(list);
        json_decref(out);
        return bee_fail("%s: \"path\" must be a file name or a list of them", t->source) ? NULL : NULL;
    }
    json_array_foreach(list, i, p) {
        char full[4096];
        const char *rel = json_string_value(p);
        if (!rel) continue;
        snprintf(full, sizeof full, "%s%s%s", rel[0] == '/' ? "" : data_dir, rel[0] == '/' ? "" : "/", rel);
        if (!bee_file_exists(full)) {
            if (t->corpus)
                bee_fail("%s: corpus file %s not found (build it with scripts/build-corpus.sh, or set --corpus-dir or BEE_CORPUS)",
                         t->source, full);
            else bee_fail("%s: data file %s not found (set --data-dir or BEE_DATA_DIR)", t->source, full);
            *missing = 1;
            out = (json_decref(out), NULL);
            break;
        }
        json_t *part = read_one(t, reader, full);
        if (!part) {
            out = (json_decref(out), NULL);
            break;
        }
        json_array_extend(out, part);
        json_decref(part);
    }
    json_decref(list);
    return out;
}

static int parse_metrics(bee_task *t) {
    json_t *ms = json_object_get(t->def, "metrics"), *m;
    size_t i;
    t->metrics = 0;
    json_array_foreach(ms, i, m) {
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof k_metrics / sizeof k_metrics[0]; k++)
            if (json_is_string(m) && !strcmp(json_string_value(m), k_metrics[k].name)) bit = k_metrics[k].bit;
        if (!bit) return bee_fail("%s: metrics[%zu]: unknown metric (acc, acc_norm, em, f1, rouge_l, ppl)", t->source, i);
        t->metrics |= bit;
    }
    if (!t->metrics)
        t->metrics = t->type == BEE_TASK_MC ? BEE_METRIC_ACC | BEE_METRIC_ACC_NORM
                     : t->type == BEE_TASK_GEN ? BEE_METRIC_EM | BEE_METRIC_F1 : BEE_METRIC_PPL;
    unsigned ok = t->type == BEE_TASK_MC ? BEE_METRIC_ACC | BEE_METRIC_ACC_NORM
                  : t->type == BEE_TASK_GEN ? BEE_METRIC_EM | BEE_METRIC_F1 | BEE_METRIC_ROUGE_L : BEE_METRIC_PPL;
    if (t->metrics & ~ok) return bee_fail("%s: \"metrics\" do not fit a task of this type", t->source);
    json_t *pm = json_object_get(t->def, "primary");
    for (unsigned b = 1; b <= BEE_METRIC_PPL && !t->primary; b <<= 1) /* default: the first in the fixed order */
        if (t->metrics & b) t->primary = b;
    if (pm) {
        unsigned bit = 0;
        for (size_t k = 0; k < sizeof k_metrics / sizeof k_metrics[0]; k++)
            if (json_is_string(pm) && !strcmp(json_string_value(pm), k_metrics[k].name)) bit = k_metrics[k].bit;
        if (!(bit & t->metrics)) return bee_fail("%s: \"primary\" must name one of the task's metrics", t->source);
        t->primary = bit;
    }
    return 0;
}

static const char *str_field(bee_task *t, const char *key, int required) {
    json_t *v = json_object_get(t->def, key);
    if (v && !json_is_string(v)) return bee_fail("%s: \"%s\" must be a string", t->source, key), NULL;
    if (!v && required) return bee_fail("%s: missing \"%s\"", t->source, key), NULL;
    return json_string_value(v);
}

static int task_parse(bee_task *t, const char *data_dir, const char *corpus_dir, int shots) {
    const char *type = str_field(t, "type", 1), *reader = str_field(t, "reader", 1), *name = str_field(t, "name", 0);
    if (!type || !reader) return -1;
    if (!strcmp(type, "mc")) t->type = BEE_TASK_MC;
    else if (!strcmp(type, "gen")) t->type = BEE_TASK_GEN;
    else if (!strcmp(type, "ppl")) t->type = BEE_TASK_PPL;
    else return bee_fail("%s: \"type\": '%s' is not mc, gen or ppl", t->source, type);
    if (name) {
        free(t->name);
        t->name = strdup(name);
    }
    if (!(t->template_ = str_field(t, "template", 1))) return -1;
    t->gold = str_field(t, "gold", t->type != BEE_TASK_PPL);
    if (t->type != BEE_TASK_PPL && !t->gold) return -1;
    t->target = str_field(t, "target", 0);
    if (!t->target) t->target = t->gold ? t->gold : "";
    t->choices = json_object_get(t->def, "choices");
    t->labels = json_object_get(t->def, "labels");
    if (!t->labels) t->labels = t->choices;
    if (t->type == BEE_TASK_MC && (json_array_size(t->choices) < 2 || json_array_size(t->labels) != json_array_size(t->choices)))
        return bee_fail("%s: an mc task needs \"choices\" (2 or more) and as many \"labels\"", t->source);
    json_t *js = json_object_get(t->def, "shots"), *mt = json_object_get(t->def, "max_tokens");
    t->shots = shots >= 0 ? shots : (int)json_integer_value(js);
    t->max_tokens = mt ? (int)json_integer_value(mt) : 32;
    if (t->shots < 0 || t->shots > 64 || t->max_tokens < 1 || t->max_tokens > 4096)
        return bee_fail("%s: \"shots\" must be in [0, 64] and \"max_tokens\" in [1, 4096]", t->source);
    if (parse_metrics(t)) return -1;
    const char *root = str_field(t, "root", 0);
    json_t *mi = json_object_get(t->def, "max_items");
    if (root && strcmp(root, "data") && strcmp(root, "corpus"))
        return bee_fail("%s: \"root\" must be \"data\" (--data-dir) or \"corpus\" (--corpus-dir)", t->source);
    if (mi && (!json_is_integer(mi) || json_integer_value(mi) < 1))
        return bee_fail("%s: \"max_items\" must be a positive integer", t->source);
    t->corpus = root && !strcmp(root, "corpus");
    if (t->corpus) data_dir = corpus_dir;
    int missing = 0;
    if (!(t->samples = read_paths(t, reader, json_object_get(t->def, "path"), data_dir, &missing))) return missing ? 2 : -1;
    if (mi) /* a fixed slice: the first max_items items */
        while (json_array_size(t->samples) > (size_t)json_integer_value(mi)) json_array_remove(t->samples, json_array_size(t->samples) - 1);
    json_t *fp = json_object_get(t->def, "fewshot_path");
    t->fewshot_is_samples = fp == NULL;
    t->fewshot = fp ? read_paths(t, reader, fp, data_dir, &missing) : json_incref(t->samples);
    return t->fewshot ? 0 : missing ? 2 : -1;
}

const char *bee_corpus_dir_default(void) {
    const char *e = getenv("BEE_CORPUS");
    return e && *e ? e : ".cache/corpus";
}

int bee_task_load(bee_task *t, const char *name, const char *task_dir, const char *data_dir, int shots) {
    return bee_task_load_ex(t, name, task_dir, data_dir, NULL, shots);
}

int bee_task_load_ex(bee_task *t, const char *name, const char *task_dir, const char *data_dir, const char *corpus_dir, int shots) {
    memset(t, 0, sizeof *t);
    if (!corpus_dir) corpus_dir = bee_corpus_dir_default();
    json_error_t je;
    const char *builtin = !strcmp(name, "sanity") ? k_sanity : !strcmp(name, "sanity-gen") ? k_sanity_gen : NULL;
    char path[4096];
    size_t nl = strlen(name);
    if (nl > 5 && !strcmp(name + nl - 5, ".json")) snprintf(path, sizeof path, "%s", name);
    else snprintf(path, sizeof path, "%s/%s.json", task_dir, name);
    t->name = strdup(name);
    t->source = strdup(builtin ? name : path);
    if (builtin) t->def = json_loads(builtin, 0, &je);
    else if (!bee_file_exists(path)) return bee_fail("task '%s': %s not found (see --task-dir)", name, path);
    else if (!(t->def = json_load_file(path, 0, &je))) return bee_fail("%s:%d: %s", path, je.line, je.text);
    if (!json_is_object(t->def)) return bee_fail("%s: a task is a JSON object", t->source);
    return task_parse(t, data_dir, corpus_dir, shots);
}

void bee_task_free(bee_task *t) {
    free(t->name);
    free(t->source);
    json_decref(t->samples);
    json_decref(t->fewshot);
    json_decref(t->def);
    memset(t, 0, sizeof *t);
}

static int append_value(bee_str *out, json_t *v) {
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (json_is_string(v)) return bee_str_append(out, json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) return bee_str_printf(out, "%lld", (long long)json_integer_value(v));
    if (json_is_real(v)) return bee_str_printf(out, "%g", json_real_value(v));
    return 0;
}

char *bee_task_render(const char *tmpl, json_t *sample, const char *where) {
    bee_str out = {0};
    int rc = bee_str_append(&out, "", 0);
    for (const char *p = tmpl; rc == 0 && *p;) {
        if (p[0] == '{' && p[1] == '{') rc = bee_str_append(&out, "{", 1), p += 2;
        else if (p[0] == '}' && p[1] == '}') rc = bee_str_append(&out, "}", 1), p += 2;
        else if (p[0] == '{') {
            const char *e = strchr(p, '}');
            char key[256];
            if (!e || e - p - 1 >= (long)sizeof key) {
                rc = bee_fail("%s: unterminated '{' in template", where);
                break;
            }
            snprintf(key, sizeof key, "%.*s", (int)(e - p - 1), p + 1);
            json_t *v = json_object_get(sample, key);
            if (!v) rc = bee_fail("%s: template field {%s} is not in the sample", where, key);
            else rc = append_value(&out, v);
            p = e + 1;
        } else {
            const char *q = p + 1;
            while (*q && *q != '{' && *q != '}') q++;
            rc = bee_str_append(&out, p, (size_t)(q - p));
            p = q;
        }
    }
    if (rc) {
        bee_str_free(&out);
        return NULL;
    }
    return bee_str_take(&out);
}

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Draws the few-shot examples of item i: a partial Fisher–Yates shuffle seeded
 * by (seed, i), so every item's draw is fixed and independent of --limit. */
static int draw_shots(const bee_task *t, size_t i, uint64_t seed, size_t *pick, size_t *n_pick) {
    size_t n = json_array_size(t->fewshot), k = 0;
    size_t *idx = malloc((n ? n : 1) * sizeof *idx);
    if (!idx) return bee_fail("out of memory");
    for (size_t j = 0; j < n; j++)
        if (!(t->fewshot_is_samples && j == i)) idx[k++] = j;
    uint64_t st = seed * 0x100000001B3ull ^ (uint64_t)i;
    size_t want = (size_t)t->shots < k ? (size_t)t->shots : k;
    for (size_t j = 0; j < want; j++) {
        size_t r = j + (size_t)(splitmix(&st) % (k - j)), tmp = idx[j];
        idx[j] = idx[r];
        idx[r] = tmp;
        pick[j] = idx[j];
    }
    *n_pick = want;
    free(idx);
    return 0;
}

char *bee_task_prompt(const bee_task *t, size_t i, uint64_t seed) {
    size_t pick[64], n_pick = 0;
    if (draw_shots(t, i, seed, pick, &n_pick)) return NULL;
    bee_str out = {0};
    int rc = bee_str_append(&out, "", 0);
    for (size_t j = 0; rc == 0 && j < n_pick; j++) {
        json_t *ex = json_array_get(t->fewshot, pick[j]);
        char *q = bee_task_render(t->template_, ex, t->source), *a = q ? bee_task_render(t->target, ex, t->source) : NULL;
        rc = a ? bee_str_printf(&out, "%s%s\n\n", q, a) : -1;
        free(q);
        free(a);
    }
    char *q = rc == 0 ? bee_task_render(t->template_, json_array_get(t->samples, i), t->source) : NULL;
    if (q) rc = bee_str_appendz(&out, q);
    free(q);
    if (rc || !q) {
        bee_str_free(&out);
        return NULL;
    }
    return bee_str_take(&out);
}
