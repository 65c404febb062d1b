/* gm_pack.c - request framing; see gm_pack.h. */
#include "gm_pack.h"
#include "gm_proto.h"

#include <string.h>

static void put_be32(char *p, unsigned long v)
{
    p[0] = (char)((v >> 24) & 0xff);
    p[1] = (char)((v >> 16) & 0xff);
    p[2] = (char)((v >> 8) & 0xff);
    p[3] = (char)(v & 0xff);
}

size_t gm_pack_body_size(unsigned nargs, const size_t *lens, int *too_large)
{
    size_t body = nargs ? nargs - 1 : 0;
    unsigned i;

    *too_large = 0;
    for (i = 0; i < nargs; i++) {
        /* Compare before adding so that no sum can wrap around. */
        if (lens[i] > GM_MAX_PACKET || body > GM_MAX_PACKET - lens[i]) {
            *too_large = 1;
            return 0;
        }
        body += lens[i];
    }
    return body;
}

int gm_pack(gm_buf_t *out, unsigned cmd, unsigned nargs,
            const char *const *args, const size_t *lens)
{
    size_t body;
    char *p;
    unsigned i;
    int too_large, rc;

    if (cmd == 0 || nargs > GM_MAX_ARGS)
        return GM_E_BAD_ARGS;
    body = gm_pack_body_size(nargs, lens, &too_large);
    if (too_large)
        return GM_E_TOO_LARGE;
    for (i = 0; i + 1 < nargs; i++)
        if (lens[i] && (!args[i] || memchr(args[i], '\0', lens[i])))
            return GM_E_BAD_ARGS;
    if (nargs && lens[nargs - 1] && !args[nargs - 1])
        return GM_E_BAD_ARGS;

    rc = gm_buf_reserve(out, GM_HEADER_SIZE + body);
    if (rc != GM_OK)
        return rc;
    p = out->data + out->end;
    memcpy(p, GM_MAGIC_REQ, 4);
    put_be32(p + 4, cmd);
    put_be32(p + 8, (unsigned long)body);
    p += GM_HEADER_SIZE;
    for (i = 0; i < nargs; i++) {
        if (lens[i]) {
            memcpy(p, args[i], lens[i]);
            p += lens[i];
        }
        if (i + 1 < nargs)
            *p++ = '\0';
    }
    out->end += GM_HEADER_SIZE + body;
    return GM_OK;
}

int gm_pack4(gm_buf_t *out, unsigned cmd, unsigned nargs,
             const char *a0, size_t l0, const char *a1, size_t l1,
             const char *a2, size_t l2, const char *a3, size_t l3)
{
    const char *args[4] = {a0, a1, a2, a3};
    size_t lens[4] = {l0, l1, l2, l3};

    if (nargs > 4)
        return GM_E_BAD_ARGS;
    return gm_pack(out, cmd, nargs, args, lens);
}
