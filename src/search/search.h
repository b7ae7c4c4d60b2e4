/* Document search: files → passages → SQLite FTS5 (BM25) with the bee
 * tokenizer (tokenize.h). See docs/SEARCH.md. */
#ifndef BEE_SEARCH_H
#define BEE_SEARCH_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct bee_search bee_search;

/* Opens (creating when absent) an index database. */
int bee_search_open(const char *path, bee_search **out);
void bee_search_close(bee_search *s);

typedef struct {
    uint64_t added, updated, removed, unchanged, skipped; /* files (skipped: unsupported type) */
    uint64_t passages;                                    /* passages written */
    uint64_t bytes;                                       /* bytes read and indexed */
} bee_index_stats;

/* Indexes files and folders (recursively): .txt .md .markdown .html .htm
 * .jsonl. Unchanged files (same size and mtime, or same content hash) are
 * skipped; files under a given folder that are in the index but no longer on
 * disk are removed. Each file is written in its own transaction. */
int bee_search_index(bee_search *s, const char *const *paths, size_t n, bee_index_stats *st);

typedef struct {
    char *doc;      /* file path, plus "#id" or "#line" for a JSONL record */
    char *heading;  /* enclosing heading, or "" */
    char *text;
    int64_t passage; /* passage number within the document, from 0 */
    int64_t offset;  /* byte offset of the passage in the document's extracted text */
    double score;    /* BM25, higher is better */
} bee_search_hit;

/* Top-k passages for a free-text query (never an FTS5 syntax error). */
int bee_search_query(bee_search *s, const char *query, int k, bee_search_hit **hits, size_t *n);
void bee_search_hits_free(bee_search_hit *h, size_t n);

/* Ranking parameters. The FTS5 table has two columns: the passage text and
 * its context (the markdown heading it is under, or a JSONL record's
 * "title"); BM25 counts a context hit context_weight times. prf_docs > 0 and
 * prf_terms > 0 turn on pseudo-relevance feedback: prf_terms terms from the
 * first pass's top prf_docs passages are added to the query. */
typedef struct {
    double context_weight;
    double k1, b; /* BM25: term-frequency saturation, length normalisation (FTS5's bm25() fixes 1.2 and 0.75) */
    int prf_docs, prf_terms;
} bee_search_params;
#define BEE_SEARCH_K1 2.0
#define BEE_SEARCH_B 0.3
#define BEE_SEARCH_CONTEXT_WEIGHT 5.0
#define BEE_SEARCH_PRF_DOCS 0
#define BEE_SEARCH_PRF_TERMS 0
void bee_search_get_params(const bee_search *s, bee_search_params *p);
int bee_search_set_params(bee_search *s, const bee_search_params *p);

/* The FTS5 MATCH expression bee_search_query uses: every query token quoted, OR-ed (malloc'd; "" when no token). */
char *bee_search_match_expr(const char *query);

/* ---------------------------------------------------------------- answering (ask.c)
 * Shared by `bee ask` and POST /v1/ask. */
/* A JSON string of s; invalid UTF-8 bytes (possible in indexed files) become U+FFFD. */
json_t *bee_json_utf8(const char *s);
/* {"doc", "passage", "score", "text", "offset", "heading"}: one result of `bee search --json`. */
json_t *bee_search_hit_json(const bee_search_hit *h);
/* The CPM-Bee dict {"input": "[1] passage\n[2] ...", "question": Q, "<ans>": ""}
 * (a literal '<' escaped as "<<"); NULL when out of memory. */
json_t *bee_ask_dict(const char *question, const bee_search_hit *h, size_t n);
/* Marks the valid citations [1]..[n_hits] of an answer in cited[] (n_hits
 * ints, zeroed by the caller); returns how many cite numbers that do not exist. */
size_t bee_ask_citations(const char *answer, size_t n_hits, int *cited);
/* {"answer", "cited": [n...], "invalid_citations", "passages": [hit + "n" + "cited"], "prompt"?}. */
json_t *bee_ask_result_json(const char *answer, const bee_search_hit *h, size_t n, const char *prompt);

/* ---------------------------------------------------------------- documents (doc.c) */
typedef struct {
    int64_t offset; /* bytes into the extracted text */
    size_t len;
    char *heading;  /* malloc'd, may be "" */
} bee_passage;

typedef struct {
    char *text;     /* extracted plain text (malloc'd) */
    size_t len;
    bee_passage *p;
    size_t n, cap;
} bee_doc;

/* Strips tags, script/style and entities; block elements become paragraph breaks. */
char *bee_html_to_text(const char *html, size_t n, size_t *out_len);
/* Splits text into passages: paragraphs merged up to ~400 characters, long
 * paragraphs cut near sentence ends with a small overlap. md: track "#" headings. */
int bee_doc_split(bee_doc *d, int markdown);
void bee_doc_free(bee_doc *d);

#define BEE_PASSAGE_TARGET 300 /* characters */
#define BEE_PASSAGE_MAX 400
#define BEE_PASSAGE_OVERLAP 40

#endif
