/*
 * gm_pack.h - request encoder: frames a packet straight into a gm_buf.
 *
 * Every argument but the last must be NUL-free (the server splits on NUL);
 * the last is copied as is. The body size is checked against GM_MAX_PACKET
 * before anything is written, so a refused request leaves the buffer as it
 * was.
 */
#ifndef GM_PACK_H
#define GM_PACK_H

#include "gm_buf.h"

/* Any request: nargs (0..GM_MAX_ARGS) arguments. Returns 0 or GM_E_*. */
int gm_pack(gm_buf_t *out, unsigned cmd, unsigned nargs,
            const char *const *args, const size_t *lens);

/* The same for up to four arguments without building arrays: the hot path
 * (submissions, work results) calls this with Python bytes passed as is. */
int gm_pack4(gm_buf_t *out, unsigned cmd, unsigned nargs,
             const char *a0, size_t l0, const char *a1, size_t l1,
             const char *a2, size_t l2, const char *a3, size_t l3);

/* Body size of a request with these argument sizes, or 0 with *too_large set
 * when it would pass GM_MAX_PACKET. For the caller's error message. */
size_t gm_pack_body_size(unsigned nargs, const size_t *lens, int *too_large);

#endif
