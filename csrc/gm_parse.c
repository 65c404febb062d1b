/* gm_parse.c - response decoder; see gm_parse.h for the contract. */
#include "gm_parse.h"

#include <string.h>

/* Argument counts of the packets a server sends (PROTOCOL.md 2). Types that
 * are missing here are never sent by a server; they are passed up whole. */
static const unsigned char response_nargs[GM_CMD_MAX + 1] = {
    [GM_CMD_NOOP] = 0,
    [GM_CMD_JOB_CREATED] = 1,
    [GM_CMD_NO_JOB] = 0,
    [GM_CMD_JOB_ASSIGN] = 3,
    [GM_CMD_WORK_STATUS] = 3,
    [GM_CMD_WORK_COMPLETE] = 2,
    [GM_CMD_WORK_FAIL] = 1,
    [GM_CMD_ECHO_RES] = 1,
    [GM_CMD_ERROR] = 2,
    [GM_CMD_STATUS_RES] = 5,
    [GM_CMD_WORK_EXCEPTION] = 2,
    [GM_CMD_OPTION_RES] = 1,
    [GM_CMD_WORK_DATA] = 2,
    [GM_CMD_WORK_WARNING] = 2,
    [GM_CMD_JOB_ASSIGN_UNIQ] = 4,
    [GM_CMD_JOB_ASSIGN_ALL] = 5,
    [GM_CMD_STATUS_RES_UNIQUE] = 6,
};

/* Packets whose first argument is a job handle. */
static int starts_with_handle(unsigned cmd)
{
    switch (cmd) {
    case GM_CMD_JOB_CREATED: case GM_CMD_JOB_ASSIGN: case GM_CMD_WORK_STATUS:
    case GM_CMD_WORK_COMPLETE: case GM_CMD_WORK_FAIL: case GM_CMD_STATUS_RES:
    case GM_CMD_WORK_EXCEPTION: case GM_CMD_WORK_DATA: case GM_CMD_WORK_WARNING:
    case GM_CMD_JOB_ASSIGN_UNIQ: case GM_CMD_JOB_ASSIGN_ALL:
        return 1;
    default:
        return 0;
    }
}

static int is_response_type(unsigned cmd)
{
    return cmd == GM_CMD_NOOP || cmd == GM_CMD_NO_JOB ||
           (cmd <= GM_CMD_MAX && response_nargs[cmd] != 0);
}

unsigned gm_parse_nargs(unsigned cmd)
{
    return cmd <= GM_CMD_MAX ? response_nargs[cmd] : 0;
}

void gm_parser_reset(gm_parser_t *p)
{
    p->text_scan = 0;
    p->text_line = 0;
    p->text_mode = GM_TEXT_NONE;
}

static void split_body(gm_packet_t *pkt, const char *body, size_t blen)
{
    unsigned want = is_response_type(pkt->cmd) ? gm_parse_nargs(pkt->cmd) : 1;
    const char *p = body, *end = body + blen, *nul;
    unsigned i;

    pkt->nargs = want;
    pkt->body_len = blen;
    for (i = 0; i < want; i++) {
        if (i + 1 == want) {
            pkt->arg[i] = p;
            pkt->len[i] = (size_t)(end - p);
            break;
        }
        nul = memchr(p, '\0', (size_t)(end - p));
        pkt->arg[i] = p;
        if (!nul) {
            /* Too few separators: the rest are empty rather than invented. */
            pkt->len[i] = (size_t)(end - p);
            p = end;
        } else {
            pkt->len[i] = (size_t)(nul - p);
            p = nul + 1;
        }
    }
    if (want == 1 && starts_with_handle(pkt->cmd) && pkt->len[0] &&
        pkt->arg[0][pkt->len[0] - 1] == '\0')
        pkt->len[0]--;
}

static long parse_binary(const char *data, size_t len, gm_packet_t *pkt, size_t *need)
{
    unsigned long body;

    if (len < 4) {
        /* Reject a wrong magic as soon as its first bytes show it. */
        if (memcmp(data, GM_MAGIC_RES, len) != 0)
            return GM_E_BAD_MAGIC;
        return 0;
    }
    if (memcmp(data, GM_MAGIC_RES, 4) != 0)
        return GM_E_BAD_MAGIC;
    if (len < GM_HEADER_SIZE)
        return 0;
    body = gm_be32(data + 8);
    if (body > GM_MAX_PACKET)
        return GM_E_RESPONSE_TOO_LARGE;
    if (len - GM_HEADER_SIZE < body) {
        *need = GM_HEADER_SIZE + (size_t)body;
        return 0;
    }
    pkt->cmd = (unsigned)gm_be32(data + 4);
    if (pkt->cmd == GM_CMD_TEXT)
        pkt->cmd = GM_CMD_INVALID; /* type 0 must never pass for a text reply */
    split_body(pkt, data + GM_HEADER_SIZE, (size_t)body);
    return (long)(GM_HEADER_SIZE + body);
}

/* Length of a line's content without its "\n" or "\r\n". */
static size_t content_len(const char *line, size_t with_lf)
{
    size_t n = with_lf - 1;
    if (n && line[n - 1] == '\r')
        n--;
    return n;
}

/* One text message of n bytes whose argument is data[0, arg_len). */
static long text_message(gm_parser_t *p, const char *data, size_t arg_len, size_t n,
                         gm_packet_t *pkt)
{
    p->text_scan = p->text_line = 0;
    /* The same cap as a binary body, whether the message came whole or in
     * pieces: the verdict does not depend on how the bytes were cut. */
    if (n > GM_MAX_PACKET)
        return GM_E_RESPONSE_TOO_LARGE;
    pkt->cmd = GM_CMD_TEXT;
    pkt->nargs = 1;
    pkt->arg[0] = data;
    pkt->len[0] = pkt->body_len = arg_len;
    return (long)n;
}

static long parse_text(gm_parser_t *p, const char *data, size_t len, int mode,
                       gm_packet_t *pkt)
{
    const char *lf;
    size_t pos, line, end;

    if (mode != GM_TEXT_LINE && mode != GM_TEXT_BLOCK && mode != GM_TEXT_MARKED)
        return GM_E_UNEXPECTED_TEXT;
    if (mode != p->text_mode || p->text_scan > len) {
        /* What was searched under another mode proves nothing for this one;
         * fewer bytes than were searched breaks the caller's contract, and
         * starting afresh keeps every read inside data[0, len). */
        p->text_mode = mode;
        p->text_scan = p->text_line = 0;
    }
    /* data[line, pos) is the searched part of an unfinished line: no byte
     * is searched twice, so a reply dripping in costs O(its length). */
    pos = p->text_scan;
    line = p->text_line;
    for (;;) {
        /* data[0] is never NUL here (that starts a binary packet), so a NUL
         * at a line start is always past the first line. */
        if (mode == GM_TEXT_MARKED && pos == line && pos < len && data[pos] == '\0')
            return text_message(p, data, pos, pos, pkt);
        if (pos == len)
            break;
        lf = memchr(data + pos, '\n', len - pos);
        if (!lf) {
            pos = len;
            break;
        }
        end = (size_t)(lf - data) + 1;
        if (mode == GM_TEXT_LINE) /* line is 0: the first line ends it */
            return text_message(p, data, content_len(data, end), end, pkt);
        if (mode == GM_TEXT_BLOCK && content_len(data + line, end - line) == 1 &&
            data[line] == '.')
            return text_message(p, data, line, end, pkt);
        pos = line = end;
    }
    p->text_scan = pos;
    p->text_line = line;
    /* The message will pass the cap whatever comes next: say so now rather
     * than buffer an endless reply. */
    if (len > GM_MAX_PACKET)
        return GM_E_RESPONSE_TOO_LARGE;
    return 0;
}

long gm_parse_next(gm_parser_t *p, const char *data, size_t len, int text_mode,
                   gm_packet_t *pkt, size_t *need)
{
    *need = 0;
    if (len == 0)
        return 0;
    if (data[0] == '\0')
        return parse_binary(data, len, pkt, need);
    return parse_text(p, data, len, text_mode, pkt);
}
