#include "serve/web.h"

#include <string.h>

const bee_web_asset *bee_web_find(const char *path) {
    if (strcmp(path, "/") == 0) path = "/index.html";
    for (size_t i = 0; i < bee_web_n_assets; i++)
        if (strcmp(bee_web_assets[i].path, path) == 0) return &bee_web_assets[i];
    return NULL;
}
