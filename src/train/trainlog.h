/* The training log of `bee train --log` (JSONL, one object per progress line)
 * and the loss curve of `bee train --curve` / `bee plot` (an SVG line chart of
 * training loss against step, with the held-out evaluations as points). */
#ifndef BEE_TRAIN_TRAINLOG_H
#define BEE_TRAIN_TRAINLOG_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"

/* One progress line. Fields that are not known are NaN: a line written for an
 * evaluation before the first step (step 0) has only eval_loss. */
typedef struct {
    uint64_t step;
    double loss, lr, gnorm, tok_s;
    double eval_loss;
} bee_log_point;

typedef struct {
    bee_log_point *v;
    size_t n, cap;
} bee_train_log;

int bee_train_log_push(bee_train_log *l, const bee_log_point *p);
void bee_train_log_free(bee_train_log *l);
/* Drops the points after `step` (a resumed run repeats them). */
void bee_train_log_truncate(bee_train_log *l, uint64_t step);

/* Appends p as one JSON object and a newline:
 * {"step":12,"loss":7.245,"lr":9.9e-05,"gnorm":1.047,"tok_s":1986,"eval_loss":7.5}
 * NaN fields are left out (eval_loss when no evaluation ran at that step). */
int bee_log_point_jsonl(const bee_log_point *p, bee_str *out);
/* The whole log as JSONL. */
int bee_train_log_jsonl(const bee_train_log *l, bee_str *out);

/* Reads a JSONL log (appends to *l). Every line must be an object with a
 * non-negative integer "step" and numbers (or null) for the other fields;
 * errors name the file, line and field. A last line without its newline that
 * does not parse is skipped: a run stopped while appending leaves one. */
int bee_train_log_read(const char *path, bee_train_log *l);

/* SVG line chart: axes with rounded ticks, labels, title (escaped), the
 * training loss as one polyline (class "train"; above 2000 points, consecutive
 * points are averaged into 2000) and every evaluation as a circle (class
 * "eval") joined by a dashed line. Non-finite losses are skipped. */
int bee_curve_svg(const bee_train_log *l, const char *title, bee_str *out);
/* bee_curve_svg written atomically (temp file, fsync, rename). */
int bee_curve_write(const char *path, const bee_train_log *l, const char *title);

/* Points the chart draws for n training points (after averaging). */
size_t bee_curve_train_points(size_t n);

#endif
