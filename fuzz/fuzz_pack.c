/*
 * fuzz_pack.c - libFuzzer target for the request encoder (gm_pack.c) and the
 * byte buffer under it (gm_buf.c).
 *
 * The input is a little program: each step takes an opcode byte, then its
 * operands from the following bytes (argument counts, lengths, contents). One
 * gm_buf_t is driven through gm_pack / gm_pack4 / reserve / append / consume /
 * clear, while a model (a plain byte array) tracks what the buffer must hold.
 *
 * Checked after every step:
 * - an accepted request appends exactly the reference framing (built here,
 *   independently: "\0REQ", be32 type, be32 body size, arguments joined by
 *   single NULs) and leaves the bytes before it alone;
 * - a refused request returns the documented code (BAD_ARGS for type 0, too
 *   many arguments, a NUL in a leading argument or a NULL with a length;
 *   TOO_LARGE when the body would pass GM_MAX_PACKET, checked before any
 *   argument is read) and leaves the buffer unchanged: same block, same
 *   start/end/cap, same bytes;
 * - the buffer keeps data[start, end) == model, start <= end <= cap, never
 *   reallocates when the room is already there or compaction suffices, rewinds
 *   on a full drain, and shrinks back to GM_BUF_INITIAL after a drain when it
 *   grew past GM_BUF_SHRINK_ABOVE.
 * Oversized lengths point at small arrays: if the encoder read an argument
 * before refusing it, AddressSanitizer would report the overflow.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gm_buf.h"
#include "gm_pack.h"
#include "gm_proto.h"

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__,       \
                    __LINE__, #cond);                                         \
            abort();                                                          \
        }                                                                     \
    } while (0)

/* The input as a stream of operands; past its end every read gives 0. */
typedef struct {
    const uint8_t *p;
    size_t left;
} src_t;

static unsigned u8(src_t *s)
{
    if (!s->left)
        return 0;
    s->left--;
    return *s->p++;
}

static unsigned u16(src_t *s) { unsigned hi = u8(s); return (hi << 8) | u8(s); }

/* n bytes of argument content straight from the input (fewer at its end). */
static const char *bytes(src_t *s, size_t *n)
{
    const char *p = (const char *)s->p;
    if (*n > s->left)
        *n = s->left;
    s->p += *n;
    s->left -= *n;
    return p;
}

/* The model: what the buffer's live bytes must be. */
static char *model;
static size_t model_len, model_cap;

static void model_append(const void *p, size_t n)
{
    if (n == 0)
        return;
    if (model_len + n > model_cap) {
        model_cap = (model_len + n) * 2;
        model = realloc(model, model_cap);
        CHECK(model);
    }
    memcpy(model + model_len, p, n);
    model_len += n;
}

static void check_buf(const gm_buf_t *b)
{
    CHECK(b->data && b->start <= b->end && b->end <= b->cap);
    CHECK(b->cap >= GM_BUF_INITIAL);
    CHECK(gm_buf_len(b) == model_len);
    CHECK(model_len == 0 || memcmp(b->data + b->start, model, model_len) == 0);
}

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Lengths that must be refused whatever the rest: over the cap alone, at the
 * edge of size_t, or just enough to push the body one byte past the cap. */
static size_t huge_len(unsigned pick, size_t others, unsigned nargs)
{
    size_t seps = nargs ? nargs - 1 : 0;
    switch (pick % 6) {
    case 0: return (size_t)GM_MAX_PACKET + 1;
    case 1: return SIZE_MAX;
    case 2: return SIZE_MAX - others;          /* the sum wraps to ~0 */
    case 3: return SIZE_MAX - others - seps + 1; /* the sum wraps to a small value */
    case 4: return GM_MAX_PACKET;              /* alone it fits: with others it may not */
    default: return (size_t)GM_MAX_PACKET - seps - others + 1; /* body = MAX + 1 */
    }
}

/* One gm_pack or gm_pack4 call with operands from the input. */
static void op_pack(gm_buf_t *b, src_t *s, int four)
{
    const char *args[GM_MAX_ARGS + 2];
    size_t lens[GM_MAX_ARGS + 2];
    unsigned flags = u8(s);
    unsigned cmd = u8(s);
    if (flags & 0x80)
        cmd |= 0xffff0000u; /* types past GM_CMD_MAX are framed as given */
    unsigned nargs = four ? u8(s) % 6 : u8(s) % (GM_MAX_ARGS + 3);
    unsigned i;

    for (i = 0; i < nargs; i++) {
        size_t n = u8(s) % 48;
        if ((flags & 0x01) && (u8(s) & 7) == 0)
            n = 0;
        args[i] = bytes(s, &n);
        lens[i] = n;
        if (n == 0 && (u8(s) & 3) == 0)
            args[i] = NULL; /* NULL with length 0 is an empty argument */
    }
    /* Now and then a NULL pointer with a length: must be refused. */
    int null_arg = nargs && (flags & 0x02) && (flags & 0x04);
    if (null_arg)
        args[u8(s) % nargs] = NULL;
    /* Now and then one oversized length (the pointer stays a small array). */
    int huge = nargs && (flags & 0x08) && !null_arg;
    if (huge) {
        unsigned k = u8(s) % nargs;
        size_t others = 0;
        for (i = 0; i < nargs; i++)
            if (i != k)
                others += lens[i];
        lens[k] = huge_len(u8(s), others, nargs);
    }

    /* The reference decision, in unbounded arithmetic. */
    int expect;
    unsigned __int128 body = nargs ? nargs - 1 : 0;
    for (i = 0; i < nargs; i++)
        body += lens[i];
    if (cmd == 0 || nargs > (four ? 4u : (unsigned)GM_MAX_ARGS))
        expect = GM_E_BAD_ARGS;
    else if (body > GM_MAX_PACKET)
        expect = GM_E_TOO_LARGE;
    else {
        expect = GM_OK;
        for (i = 0; i < nargs; i++) {
            if (lens[i] && !args[i])
                expect = GM_E_BAD_ARGS;
            else if (i + 1 < nargs && lens[i] && memchr(args[i], '\0', lens[i]))
                expect = GM_E_BAD_ARGS;
        }
    }
    if (huge && expect == GM_OK)
        return; /* a huge length that fits would read past our arrays: skip */

    gm_buf_t before = *b;
    int rc;
    if (four)
        rc = gm_pack4(b, cmd, nargs, nargs > 0 ? args[0] : NULL, nargs > 0 ? lens[0] : 0,
                      nargs > 1 ? args[1] : NULL, nargs > 1 ? lens[1] : 0,
                      nargs > 2 ? args[2] : NULL, nargs > 2 ? lens[2] : 0,
                      nargs > 3 ? args[3] : NULL, nargs > 3 ? lens[3] : 0);
    else
        rc = gm_pack(b, cmd, nargs, args, lens);
    CHECK(rc == expect);

    if (rc != GM_OK) {
        /* Refused: the very same block, positions and bytes. */
        CHECK(b->data == before.data && b->cap == before.cap &&
              b->start == before.start && b->end == before.end);
        check_buf(b);
        if (rc == GM_E_TOO_LARGE) {
            int too_large = 0;
            CHECK(gm_pack_body_size(nargs, lens, &too_large) == 0 && too_large == 1);
        }
        return;
    }

    /* Also the helper the error message uses agrees with the reference. */
    int too_large = -1;
    CHECK(gm_pack_body_size(nargs, lens, &too_large) == (size_t)body && too_large == 0);

    unsigned char hdr[GM_HEADER_SIZE];
    memcpy(hdr, GM_MAGIC_REQ, 4);
    put_be32(hdr + 4, cmd);
    put_be32(hdr + 8, (uint32_t)body);
    model_append(hdr, sizeof hdr);
    for (i = 0; i < nargs; i++) {
        if (lens[i])
            model_append(args[i], lens[i]);
        if (i + 1 < nargs)
            model_append("", 1);
    }
    /* Room that was there is used in place: no reallocation. */
    if (before.cap - before.end >= GM_HEADER_SIZE + (size_t)body)
        CHECK(b->data == before.data && b->start == before.start);
    check_buf(b);
}

/* Growing past SHRINK_ABOVE costs fresh pages under ASan: once per input is
 * enough to reach the shrinking path. */
static int grew_big;

static void op_reserve(gm_buf_t *b, src_t *s)
{
    unsigned sel = u8(s);
    size_t n;
    switch (sel % 8) {
    case 0: n = SIZE_MAX - gm_buf_len(b) + 1 + (sel >> 3); break; /* len + n wraps */
    case 1: /* now and then up to 2 MiB: grows past SHRINK_ABOVE */
        if ((sel >> 3) % 16 == 0 && !grew_big) {
            n = (size_t)u16(s) << 5;
            grew_big = 1;
        } else
            n = u16(s) % 20000;
        break;
    case 2: /* the compaction edge: exactly what a rewind would free, +-1
             * (growing by doubling only while small) */
        n = b->cap - gm_buf_len(b);
        if ((sel >> 3) % 3 == 0 && n)
            n--;
        else if ((sel >> 3) % 3 == 2 && b->cap <= 4 * GM_BUF_INITIAL)
            n++;
        break;
    default: n = u16(s) % 20000; break;
    }
    gm_buf_t before = *b;
    int rc = gm_buf_reserve(b, n);
    if (sel % 8 == 0 && n > SIZE_MAX - gm_buf_len(&before)) {
        CHECK(rc == GM_E_NOMEM);
        CHECK(b->data == before.data && b->cap == before.cap &&
              b->start == before.start && b->end == before.end);
    } else {
        CHECK(rc == GM_OK);
        CHECK(gm_buf_room(b) >= n);
        if (gm_buf_room(&before) >= n)   /* already room: nothing moves */
            CHECK(b->data == before.data && b->start == before.start &&
                  b->cap == before.cap);
        else if (gm_buf_len(&before) + n <= before.cap) /* compaction only */
            CHECK(b->data == before.data && b->start == 0 && b->cap == before.cap);
        else
            CHECK(b->start == 0 && b->cap >= gm_buf_len(&before) + n);
    }
    check_buf(b);
}

static void op_append(gm_buf_t *b, src_t *s)
{
    size_t n = u8(s);
    const char *p = bytes(s, &n);
    size_t room = gm_buf_room(b);
    char *data = b->data;
    CHECK(gm_buf_append(b, p, n) == GM_OK);
    if (room >= n)
        CHECK(b->data == data);
    model_append(p, n);
    check_buf(b);
}

static void drained(const gm_buf_t *b, size_t cap_before)
{
    CHECK(b->start == 0 && b->end == 0);
    if (cap_before > GM_BUF_SHRINK_ABOVE)
        CHECK(b->cap == GM_BUF_INITIAL);
    else
        CHECK(b->cap == cap_before);
}

static void op_consume(gm_buf_t *b, src_t *s)
{
    unsigned sel = u8(s);
    size_t len = gm_buf_len(b), cap = b->cap;
    size_t n = (sel & 3) == 0 ? len : (len ? u16(s) % (len + 1) : 0);
    gm_buf_consume(b, n);
    if (n) {
        memmove(model, model + n, model_len - n);
        model_len -= n;
    }
    if (n == len)
        drained(b, cap);
    check_buf(b);
}

static void op_clear(gm_buf_t *b)
{
    size_t cap = b->cap;
    gm_buf_clear(b);
    model_len = 0;
    drained(b, cap);
    check_buf(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    src_t s = {data, size};
    gm_buf_t b;
    unsigned steps = 0;

    CHECK(gm_buf_init(&b) == GM_OK);
    CHECK(b.cap == GM_BUF_INITIAL && b.start == 0 && b.end == 0);
    model_len = 0;
    grew_big = 0;
    while (s.left && steps++ < 256) {
        switch (u8(&s) % 8) {
        case 0: case 1: op_pack(&b, &s, 0); break;
        case 2: case 3: op_pack(&b, &s, 1); break;
        case 4: op_reserve(&b, &s); break;
        case 5: op_append(&b, &s); break;
        case 6: op_consume(&b, &s); break;
        default: op_clear(&b); break;
        }
    }
    gm_buf_free(&b);
    CHECK(b.data == NULL && b.cap == 0);
    return 0;
}
