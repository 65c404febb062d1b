/*
 * gm_conn.h - one connection's bytes: its read and write buffers and the
 * decoder, and for the libev path the socket too. Python owns the socket
 * object, the watchers or the transport; this owns every byte between them,
 * so one readable or writable event costs Python one call, however many
 * packets or syscalls it takes.
 *
 * Two ways in and out, one buffer pair:
 * - socket: gm_conn_read / gm_conn_write do recv / send on fd themselves;
 * - feed: a transport this does not own (asyncio's data_received, a TLS
 *   memory BIO) hands received bytes to gm_conn_feed, and takes the bytes to
 *   send from gm_conn_out, then drops what it took with gm_conn_out_consume.
 * Packets come out of gm_conn_next the same way after either.
 *
 * What must stay true:
 * - a packet handed out by gm_conn_next points into the read buffer and stays
 *   valid until the next gm_conn_next / gm_conn_read / gm_conn_feed /
 *   gm_conn_reset call;
 * - the span gm_conn_out gives stays valid until the write buffer next
 *   changes (pack, append, out_consume, write, reset);
 * - the read buffer holds at most one message being assembled plus
 *   GM_READ_BUDGET of read-ahead: a fast server cannot grow it without bound
 *   (the rest waits in the kernel; libev is level-triggered). A feeding
 *   transport cannot be told to wait, so gm_conn_feed refuses more bytes once
 *   a whole largest message's worth sits undecoded (GM_E_BACKLOG);
 * - a packet's declared length is trusted only as the decoder reports it
 *   (need): behind a valid magic and within GM_MAX_PACKET. Then, and only
 *   for the packet at the front, room for all of it is made at once.
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
/* Most undecoded bytes gm_conn_feed accepts more bytes behind: one message
 * of the largest size. A caller that drains gm_conn_next after each feed
 * never holds more than one unfinished message, so it never sees the limit. */
#define GM_FEED_BACKLOG (GM_HEADER_SIZE + GM_MAX_PACKET)

typedef struct gm_conn {
    int fd;
    int err_no;       /* errno of the last GM_E_READ / GM_E_WRITE */
    size_t consumed;  /* bytes of the packet last handed out, dropped lazily */
    size_t need;      /* decoder's size of the binary packet at the front; 0: unknown */
    gm_buf_t rbuf;
    gm_buf_t wbuf;
    gm_parser_t parser;
} gm_conn_t;

gm_conn_t *gm_conn_new(void);
void gm_conn_free(gm_conn_t *c);
/* Forget the socket and every buffered byte; buffers go back to rest size.
 * fd may be -1 for a connection that is only fed. */
void gm_conn_reset(gm_conn_t *c, int fd);

/* recv until EAGAIN (or the budget): bytes read (>= 0), GM_E_EOF, GM_E_READ
 * or GM_E_NOMEM. Bytes that arrived before EOF or an error stay readable by
 * gm_conn_next. */
long gm_conn_read(gm_conn_t *c);
/* Append len received bytes to the read buffer, as gm_conn_read would have:
 * GM_OK, GM_E_BAD_ARGS (NULL with a length), GM_E_BACKLOG (nothing taken; the
 * caller did not drain gm_conn_next) or GM_E_NOMEM (nothing taken). */
int gm_conn_feed(gm_conn_t *c, const char *data, size_t len);
/* Next message: 1 with *pkt filled, 0 when none is complete, < 0 GM_E_*. */
int gm_conn_next(gm_conn_t *c, int text_mode, gm_packet_t *pkt);
/* A run of up to max whole JOB_CREATED replies at the front (a burst of
 * background submissions answered): their handles copied into out (cap
 * bytes), each followed by a NUL, *used the bytes written; returns how many
 * (0: the front is anything else, complete or not). The run ends before a
 * handle holding a NUL of its own, and before anything gm_conn_next would
 * report as an error. Consumes exactly the packets returned. */
int gm_conn_next_created(gm_conn_t *c, int max, char *out, size_t cap, size_t *used);

/* send what the kernel takes: bytes still queued (>= 0) or GM_E_WRITE. */
long gm_conn_write(gm_conn_t *c);
/* The unsent bytes of the write buffer, without a copy: their count, and
 * *data pointing at the first (never NULL). */
size_t gm_conn_out(const gm_conn_t *c, const char **data);
/* Drop the first n unsent bytes once the transport took them; n past the end
 * drops them all. */
void gm_conn_out_consume(gm_conn_t *c, size_t n);
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
