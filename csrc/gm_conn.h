/*
 * gm_conn.h - one connection's bytes: the socket, its read and write buffers
 * and the decoder. Python owns the socket object and the watchers; this owns
 * every byte between them, so one readable or writable event costs Python one
 * call, however many packets or syscalls it takes.
 *
 * What must stay true:
 * - a packet handed out by gm_conn_next points into the read buffer and stays
 *   valid until the next gm_conn_next / gm_conn_read / gm_conn_reset call;
 * - the read buffer holds at most one message being assembled plus
 *   GM_READ_BUDGET of read-ahead: a fast server cannot grow it without bound
 *   (the rest waits in the kernel; libev is level-triggered).
 */
#ifndef GM_CONN_H
#define GM_CONN_H

#include "gm_buf.h"
#include "gm_parse.h"

/* Read-ahead per readable event; big enough that a burst of small replies is
 * one event, small enough to bound the buffer. */
#define GM_READ_BUDGET (1024u * 1024u)
/* Least free room a recv is given; below it the buffer compacts or grows.
 * Small, so that a buffer at rest stays at GM_BUF_INITIAL. */
#define GM_READ_MIN_ROOM (4u * 1024u)

typedef struct gm_conn {
    int fd;
    int err_no;       /* errno of the last GM_E_READ / GM_E_WRITE */
    size_t consumed;  /* bytes of the packet last handed out, dropped lazily */
    gm_buf_t rbuf;
    gm_buf_t wbuf;
    gm_parser_t parser;
} gm_conn_t;

gm_conn_t *gm_conn_new(void);
void gm_conn_free(gm_conn_t *c);
/* Forget the socket and every buffered byte; buffers go back to rest size. */
void gm_conn_reset(gm_conn_t *c, int fd);

/* recv until EAGAIN (or the budget): bytes read (>= 0), GM_E_EOF or GM_E_READ.
 * Bytes that arrived before EOF or an error stay readable by gm_conn_next. */
long gm_conn_read(gm_conn_t *c);
/* Next message: 1 with *pkt filled, 0 when none is complete, < 0 GM_E_*. */
int gm_conn_next(gm_conn_t *c, int text_mode, gm_packet_t *pkt);

/* send what the kernel takes: bytes still queued (>= 0) or GM_E_WRITE. */
long gm_conn_write(gm_conn_t *c);
/* Queue a request (gm_pack4 into the write buffer) or raw text. */
int gm_conn_pack4(gm_conn_t *c, unsigned cmd, unsigned nargs,
                  const char *a0, size_t l0, const char *a1, size_t l1,
                  const char *a2, size_t l2, const char *a3, size_t l3);
int gm_conn_pack(gm_conn_t *c, unsigned cmd, unsigned nargs,
                 const char *const *args, const size_t *lens);
int gm_conn_append(gm_conn_t *c, const char *data, size_t len);

size_t gm_conn_write_pending(const gm_conn_t *c);
size_t gm_conn_read_capacity(const gm_conn_t *c);
size_t gm_conn_write_capacity(const gm_conn_t *c);

#endif
