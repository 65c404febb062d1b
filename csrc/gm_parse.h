/*
 * gm_parse.h - incremental response decoder. Bytes in; one complete binary
 * packet or admin reply out per call, as spans into the caller's bytes (no
 * copy). Every byte is untrusted: lengths are checked against what is there
 * and against GM_MAX_PACKET before anything is trusted or reserved.
 *
 * The first byte classifies a message (PROTOCOL.md 1.2): NUL starts a binary
 * packet, anything else a text reply. The caller says what text it expects
 * (GM_TEXT_*): the shape of an admin reply depends on the command sent, which
 * only the caller knows.
 */
#ifndef GM_PARSE_H
#define GM_PARSE_H

#include <stddef.h>
#include "gm_proto.h"

#define GM_TEXT_NONE 0  /* no admin request awaits: text is an error */
#define GM_TEXT_LINE 1  /* one line */
#define GM_TEXT_BLOCK 2 /* lines up to ".\n" (or a lone "ERR ..." line) */
#define GM_TEXT_MARKED 3 /* lines up to a line start holding NUL (an ECHO_RES marker) */

typedef struct gm_packet {
    unsigned cmd;      /* GM_CMD_*, or GM_CMD_TEXT for an admin reply */
    unsigned nargs;
    const char *arg[GM_MAX_ARGS];
    size_t len[GM_MAX_ARGS];
} gm_packet_t;

typedef struct gm_parser {
    size_t text_scan; /* bytes of a pending text reply already searched */
    int text_mode;    /* the mode text_scan was searched under */
} gm_parser_t;

void gm_parser_reset(gm_parser_t *p);

/* Decode the first message in data[0, len).
 * > 0: a message of that many bytes was decoded into *pkt;
 *   0: incomplete; *need is the total size a binary packet needs (0 if not
 *      yet known), so a reader can make room for it at once;
 * < 0: GM_E_BAD_MAGIC, GM_E_RESPONSE_TOO_LARGE or GM_E_UNEXPECTED_TEXT.
 * Binary arguments are split by the response type's argument count; missing
 * trailing arguments are empty, and one trailing NUL is dropped from a lone
 * handle argument (gearmand's WORK_FAIL, PROTOCOL.md 8.5). Unknown types come
 * back whole, as one argument. A text reply comes back as one argument: the
 * line without its line ending, or a block's lines before the "." line. */
long gm_parse_next(gm_parser_t *p, const char *data, size_t len, int text_mode,
                   gm_packet_t *pkt, size_t *need);

/* Number of arguments a response type carries, 0 for unknown types. */
unsigned gm_parse_nargs(unsigned cmd);

#endif
