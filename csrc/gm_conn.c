/* gm_conn.c - one connection's buffers, socket I/O and feeding; see gm_conn.h. */
#include "gm_conn.h"
#include "gm_pack.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0 /* macOS: the socket carries SO_NOSIGPIPE instead */
#endif

gm_conn_t *gm_conn_new(void)
{
    gm_conn_t *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->fd = -1;
    if (gm_buf_init(&c->rbuf) != GM_OK || gm_buf_init(&c->wbuf) != GM_OK) {
        gm_conn_free(c);
        return NULL;
    }
    return c;
}

void gm_conn_free(gm_conn_t *c)
{
    if (!c)
        return;
    gm_buf_free(&c->rbuf);
    gm_buf_free(&c->wbuf);
    free(c);
}

void gm_conn_reset(gm_conn_t *c, int fd)
{
    c->fd = fd;
    c->err_no = 0;
    c->consumed = 0;
    c->need = 0;
    gm_buf_clear(&c->rbuf);
    gm_buf_clear(&c->wbuf);
    gm_parser_reset(&c->parser);
}

static void drop_consumed(gm_conn_t *c)
{
    if (c->consumed) {
        gm_buf_consume(&c->rbuf, c->consumed);
        c->consumed = 0;
    }
}

/* Size of the binary packet at the front of the read buffer once its header
 * is in, 0 while unknown. It comes from the decoder, which reports a length
 * only behind a valid magic and within GM_MAX_PACKET, so a length behind a
 * bad magic gets no room. gm_conn_next keeps it from its last "incomplete";
 * asked here only when the header came in after that call. */
static size_t front_need(gm_conn_t *c)
{
    const char *front = c->rbuf.data + c->rbuf.start;
    size_t len = gm_buf_len(&c->rbuf), need = 0;
    gm_packet_t pkt;
    long n;

    if (c->need || len < GM_HEADER_SIZE || front[0] != '\0')
        return c->need;
    /* A binary front never touches the parser's text state. */
    n = gm_parse_next(&c->parser, front, len, GM_TEXT_NONE, &pkt, &need);
    if (n > 0)
        c->need = (size_t)n; /* already complete: nothing owed, no new probe */
    else if (n == 0)
        c->need = need;
    return c->need;
}

/* Bytes the packet at the front still lacks. */
static size_t front_owed(gm_conn_t *c)
{
    size_t need = front_need(c), len = gm_buf_len(&c->rbuf);
    return need > len ? need - len : 0;
}

long gm_conn_read(gm_conn_t *c)
{
    long total = 0;
    size_t owed, allowed, want, room;
    ssize_t n;

    drop_consumed(c);
    for (;;) {
        /* The budget bounds read-ahead; only the packet at the front (the one
         * the decoder waits for) may take more, and then just what it lacks. */
        owed = front_owed(c);
        allowed = (size_t)total < GM_READ_BUDGET ? GM_READ_BUDGET - (size_t)total : 0;
        if (allowed < owed)
            allowed = owed;
        if (allowed == 0)
            return total;
        /* A large packet gets a block of its final size at once rather than
         * repeated doublings. */
        want = allowed < GM_READ_MIN_ROOM ? allowed : GM_READ_MIN_ROOM;
        if (want < owed)
            want = owed;
        if (gm_buf_reserve(&c->rbuf, want) != GM_OK)
            return GM_E_NOMEM;
        room = gm_buf_room(&c->rbuf);
        if (room > allowed)
            room = allowed;
        n = recv(c->fd, c->rbuf.data + c->rbuf.end, room, 0);
        if (n > 0) {
            c->rbuf.end += (size_t)n;
            total += n;
            /* A short read means the socket is drained: skip the EAGAIN call. */
            if ((size_t)n < room)
                return total;
            continue;
        }
        if (n == 0)
            return GM_E_EOF;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return total;
        c->err_no = errno;
        return GM_E_READ;
    }
}

int gm_conn_feed(gm_conn_t *c, const char *data, size_t len)
{
    size_t owed;
    int rc;

    if (len && !data)
        return GM_E_BAD_ARGS;
    drop_consumed(c);
    if (gm_buf_len(&c->rbuf) > GM_FEED_BACKLOG)
        return GM_E_BACKLOG;
    /* As in gm_conn_read: the packet at the front gets all its room at once. */
    owed = front_owed(c);
    rc = gm_buf_reserve(&c->rbuf, len > owed ? len : owed);
    if (rc != GM_OK)
        return rc;
    if (len)
        memcpy(c->rbuf.data + c->rbuf.end, data, len);
    c->rbuf.end += len;
    return GM_OK;
}

int gm_conn_next(gm_conn_t *c, int text_mode, gm_packet_t *pkt)
{
    size_t need;
    long n;

    drop_consumed(c);
    n = gm_parse_next(&c->parser, c->rbuf.data + c->rbuf.start,
                      gm_buf_len(&c->rbuf), text_mode, pkt, &need);
    if (n <= 0) {
        c->need = n == 0 ? need : 0;
        return (int)n;
    }
    c->consumed = (size_t)n;
    c->need = 0; /* the front moves on once this packet is dropped */
    return 1;
}

int gm_conn_next_created(gm_conn_t *c, int max, char *out, size_t cap, size_t *used)
{
    const char *front;
    size_t len, off = 0, body, hlen;
    int count = 0;

    *used = 0;
    drop_consumed(c);
    front = c->rbuf.data + c->rbuf.start;
    len = gm_buf_len(&c->rbuf);
    while (count < max && len - off >= GM_HEADER_SIZE) {
        const char *p = front + off;
        if (memcmp(p, "\0RES", 4) != 0 || gm_be32(p + 4) != GM_CMD_JOB_CREATED)
            break; /* anything else (a bad magic too): gm_conn_next's */
        body = gm_be32(p + 8);
        if (body > GM_MAX_PACKET || body > len - off - GM_HEADER_SIZE)
            break; /* too large or incomplete: gm_conn_next says which */
        hlen = body;
        if (hlen && p[GM_HEADER_SIZE + hlen - 1] == '\0')
            hlen--; /* the trailing NUL some servers send, as the decoder drops it */
        if (memchr(p + GM_HEADER_SIZE, '\0', hlen) || *used + hlen + 1 > cap)
            break; /* a NUL of its own would split wrong; or out is full */
        memcpy(out + *used, p + GM_HEADER_SIZE, hlen);
        out[*used + hlen] = '\0';
        *used += hlen + 1;
        off += GM_HEADER_SIZE + body;
        count++;
    }
    if (count) {
        c->consumed = off; /* dropped lazily, as a packet gm_conn_next handed out */
        c->need = 0;
    }
    return count;
}

long gm_conn_write(gm_conn_t *c)
{
    ssize_t n;

    while (gm_buf_len(&c->wbuf)) {
        n = send(c->fd, c->wbuf.data + c->wbuf.start, gm_buf_len(&c->wbuf),
                 MSG_NOSIGNAL);
        if (n > 0) {
            gm_buf_consume(&c->wbuf, (size_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        c->err_no = n < 0 ? errno : EPIPE;
        return GM_E_WRITE;
    }
    return (long)gm_buf_len(&c->wbuf);
}

size_t gm_conn_out(const gm_conn_t *c, const char **data)
{
    *data = c->wbuf.data + c->wbuf.start;
    return gm_buf_len(&c->wbuf);
}

void gm_conn_out_consume(gm_conn_t *c, size_t n)
{
    gm_buf_consume(&c->wbuf, n); /* n >= what is there: a full drain */
}

int gm_conn_pack4(gm_conn_t *c, unsigned cmd, unsigned nargs,
                  const char *a0, size_t l0, const char *a1, size_t l1,
                  const char *a2, size_t l2, const char *a3, size_t l3)
{
    return gm_pack4(&c->wbuf, cmd, nargs, a0, l0, a1, l1, a2, l2, a3, l3);
}

int gm_conn_pack(gm_conn_t *c, unsigned cmd, unsigned nargs,
                 const char *const *args, const size_t *lens)
{
    return gm_pack(&c->wbuf, cmd, nargs, args, lens);
}

int gm_conn_append(gm_conn_t *c, const char *data, size_t len)
{
    if (len && !data)
        return GM_E_BAD_ARGS;
    return gm_buf_append(&c->wbuf, data, len);
}

size_t gm_conn_write_pending(const gm_conn_t *c) { return gm_buf_len(&c->wbuf); }
size_t gm_conn_read_capacity(const gm_conn_t *c) { return c->rbuf.cap; }
size_t gm_conn_write_capacity(const gm_conn_t *c) { return c->wbuf.cap; }
