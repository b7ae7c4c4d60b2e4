/* The chat web app served at `/`: the files of src/serve/web/, embedded at
 * build time by cmake/embed_web.cmake. */
#ifndef BEE_SERVE_WEB_H
#define BEE_SERVE_WEB_H

#include <stddef.h>

typedef struct {
    const char *path; /* "/index.html" */
    const char *type; /* Content-Type */
    const unsigned char *data;
    size_t size;
} bee_web_asset;

extern const bee_web_asset bee_web_assets[];
extern const size_t bee_web_n_assets;

/* The asset for a request path ("/" is "/index.html"), or NULL. */
const bee_web_asset *bee_web_find(const char *path);

#endif
