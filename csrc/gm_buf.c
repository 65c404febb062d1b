/* gm_buf.c - see gm_buf.h for the rules this file keeps. */
#include "gm_buf.h"
#include "gm_proto.h"

#include <stdlib.h>
#include <string.h>

int gm_buf_init(gm_buf_t *b)
{
    b->data = malloc(GM_BUF_INITIAL);
    b->cap = b->data ? GM_BUF_INITIAL : 0;
    b->start = b->end = 0;
    return b->data ? GM_OK : GM_E_NOMEM;
}

void gm_buf_free(gm_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->cap = b->start = b->end = 0;
}

int gm_buf_reserve(gm_buf_t *b, size_t n)
{
    size_t len = gm_buf_len(b), need, cap;
    char *p;

    if (gm_buf_room(b) >= n)
        return GM_OK;
    if (n > (size_t)-1 - len)
        return GM_E_NOMEM;
    need = len + n;
    if (need <= b->cap) {
        /* Enough room once the consumed front is reclaimed: no allocation. */
        memmove(b->data, b->data + b->start, len);
        b->start = 0;
        b->end = len;
        return GM_OK;
    }
    cap = b->cap ? b->cap : GM_BUF_INITIAL;
    while (cap < need)
        cap = cap > (size_t)-1 / 2 ? need : cap * 2;
    if (b->start == 0) {
        p = realloc(b->data, cap);
        if (!p)
            return GM_E_NOMEM;
    } else {
        /* A fresh block copies only the live bytes; realloc would copy all. */
        p = malloc(cap);
        if (!p)
            return GM_E_NOMEM;
        if (len)
            memcpy(p, b->data + b->start, len);
        free(b->data);
    }
    b->data = p;
    b->cap = cap;
    b->start = 0;
    b->end = len;
    return GM_OK;
}

int gm_buf_append(gm_buf_t *b, const void *src, size_t n)
{
    int rc = gm_buf_reserve(b, n);
    if (rc != GM_OK)
        return rc;
    if (n)
        memcpy(b->data + b->end, src, n);
    b->end += n;
    return GM_OK;
}

static void gm_buf_rest(gm_buf_t *b)
{
    char *p;
    b->start = b->end = 0;
    if (b->cap <= GM_BUF_SHRINK_ABOVE)
        return;
    p = malloc(GM_BUF_INITIAL);
    if (!p)
        return; /* keeping the big block is safe, merely wasteful */
    free(b->data);
    b->data = p;
    b->cap = GM_BUF_INITIAL;
}

void gm_buf_consume(gm_buf_t *b, size_t n)
{
    if (n >= gm_buf_len(b))
        gm_buf_rest(b);
    else
        b->start += n;
}

void gm_buf_clear(gm_buf_t *b)
{
    gm_buf_rest(b);
}
