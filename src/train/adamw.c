/* AdamW (torch 1.13 `_single_tensor_adamw`), learning-rate schedule and
 * gradient-norm helpers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/lora.h"
#include "train/train.h"
#include "util/error.h"

/* ================================================================ adamw */

/* LoRA: moments only for the adapter (the frozen base has none). */
static int moments_alloc(bee_params *p, size_t n) {
    p->n = n;
    p->mem = calloc(n ? n : 1, sizeof *p->mem);
    return p->mem ? 0 : bee_fail("out of memory for the optimizer state");
}

int bee_adamw_init(bee_adamw *o, const bee_train_model *t) {
    memset(o, 0, sizeof *o);
    if (t->lora) {
        if (moments_alloc(&o->m, t->lora->n) || moments_alloc(&o->v, t->lora->n)) {
            bee_adamw_free(o);
            return -1;
        }
        return 0;
    }
    if (bee_params_alloc(t, &o->m) || bee_params_alloc(t, &o->v)) {
        bee_adamw_free(o);
        return -1;
    }
    return 0;
}

void bee_adamw_free(bee_adamw *o) {
    bee_params_free(&o->m);
    bee_params_free(&o->v);
    o->step = 0;
}

/* Per element, in torch's order: decay the weight first (decoupled), update
 * both moments, then divide by the bias-corrected second moment. The scalar
 * corrections are computed in double as Python floats and rounded once, as
 * torch does when it passes them to the float kernels. */
void bee_adamw_update(float *p, const float *g, float *m, float *v, size_t n, uint64_t step, const bee_adamw_cfg *c,
                      double lr) {
    double bc1 = 1.0 - pow(c->beta1, (double)step);
    double bc2 = 1.0 - pow(c->beta2, (double)step);
    float decay = (float)(1.0 - lr * c->weight_decay);
    float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    float b1 = (float)c->beta1, b2 = (float)c->beta2, ib1 = (float)(1.0 - c->beta1), ib2 = (float)(1.0 - c->beta2);
    float eps = (float)c->eps;
    for (size_t i = 0; i < n; i++) {
        p[i] *= decay;
        m[i] = m[i] * b1 + g[i] * ib1;
        v[i] = v[i] * b2 + ib2 * g[i] * g[i];
        float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] += (-step_size * m[i]) / denom;
    }
}

void bee_adamw_step(bee_adamw *o, bee_train_model *t, const bee_adamw_cfg *c, double lr) {
    o->step++;
    if (t->lora) bee_adamw_update(t->lora->mem, t->lora_g, o->m.mem, o->v.mem, t->lora->n, o->step, c, lr);
    else bee_adamw_update(t->w.mem, t->g.mem, o->m.mem, o->v.mem, t->w.n, o->step, c, lr);
}

/* ================================================================ schedule */

double bee_lr_at(const bee_lr_schedule *s, uint64_t step) {
    if (step < s->warmup) return s->lr_max * (double)(step + 1) / (double)s->warmup;
    if (step >= s->total || s->total <= s->warmup) return s->total > s->warmup ? s->lr_min : s->lr_max;
    double progress = (double)(step - s->warmup) / (double)(s->total - s->warmup);
    return s->lr_min + 0.5 * (s->lr_max - s->lr_min) * (1.0 + cos(3.14159265358979323846 * progress));
}

/* ================================================================ gradient norm */

double bee_grad_norm(const bee_train_model *t) {
    double s = 0;
    for (size_t i = 0; i < t->g.n; i++) s += (double)t->g.mem[i] * t->g.mem[i];
    for (size_t i = 0; t->lora && i < t->lora->n; i++) s += (double)t->lora_g[i] * t->lora_g[i];
    return sqrt(s);
}

void bee_grad_scale(bee_train_model *t, float s) {
    for (size_t i = 0; i < t->g.n; i++) t->g.mem[i] *= s;
    for (size_t i = 0; t->lora && i < t->lora->n; i++) t->lora_g[i] *= s;
}

double bee_grad_clip(bee_train_model *t, double max_norm) {
    double norm = bee_grad_norm(t);
    double coef = max_norm / (norm + 1e-6);
    if (coef < 1.0) bee_grad_scale(t, (float)coef);
    return norm;
}
