/*
 * gm_buf.h - a growable byte buffer with a read end and a write end.
 *
 * What must stay true:
 * - bytes live in data[start, end); cap is the allocation size;
 * - a buffer rests at GM_BUF_INITIAL bytes; steady small-packet traffic never
 *   reallocates (a full drain rewinds start/end to 0, and room is made by
 *   compacting before growing);
 * - after a full drain, a buffer that grew past GM_BUF_SHRINK_ABOVE goes back
 *   to GM_BUF_INITIAL, so one large payload does not pin memory for good.
 */
#ifndef GM_BUF_H
#define GM_BUF_H

#include <stddef.h>

#define GM_BUF_INITIAL (16u * 1024u)
#define GM_BUF_SHRINK_ABOVE (1024u * 1024u)

typedef struct gm_buf {
    char *data;
    size_t cap;
    size_t start;
    size_t end;
} gm_buf_t;

int gm_buf_init(gm_buf_t *b);
void gm_buf_free(gm_buf_t *b);
/* Make room for n more bytes after end; 0 or GM_E_NOMEM. */
int gm_buf_reserve(gm_buf_t *b, size_t n);
int gm_buf_append(gm_buf_t *b, const void *src, size_t n);
/* Drop n bytes (n <= length) from the front; a full drain rewinds and shrinks. */
void gm_buf_consume(gm_buf_t *b, size_t n);
/* Drop everything and go back to the resting size. */
void gm_buf_clear(gm_buf_t *b);

static inline size_t gm_buf_len(const gm_buf_t *b) { return b->end - b->start; }
static inline size_t gm_buf_room(const gm_buf_t *b) { return b->cap - b->end; }

#endif
