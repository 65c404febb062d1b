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

#define GM_TEXT_NONE 0   /* no admin request awaits: text is an error */
#define GM_TEXT_LINE 1   /* one line */
#define GM_TEXT_BLOCK 2  /* lines up to the first line that is exactly "." */
#define GM_TEXT_MARKED 3 /* lines up to the first line start holding a NUL */

typedef struct gm_packet {
    unsigned cmd;      /* GM_CMD_*, or GM_CMD_TEXT for an admin reply */
    unsigned nargs;
    const char *arg[GM_MAX_ARGS];
    size_t len[GM_MAX_ARGS];
    size_t body_len;   /* all the arguments with their separators, from arg[0] */
} gm_packet_t;

/* Where the search of a pending text reply stopped, so that the next call
 * resumes there instead of searching the same bytes again: over a reply that
 * arrives in k pieces the total work is O(its length), not O(length * k). */
typedef struct gm_parser {
    size_t text_scan; /* bytes of the pending text reply already searched */
    size_t text_line; /* start of the line being searched (<= text_scan) */
    int text_mode;    /* the mode both were found under */
} gm_parser_t;

void gm_parser_reset(gm_parser_t *p);

/* Decode the first message in data[0, len).
 * > 0: a message of that many bytes was decoded into *pkt;
 *   0: incomplete; *need is the total size a binary packet needs (0 if not
 *      yet known, or for text), so a reader can make room for it at once;
 * < 0: GM_E_BAD_MAGIC, GM_E_RESPONSE_TOO_LARGE or GM_E_UNEXPECTED_TEXT.
 *
 * Between calls the caller passes the same pending bytes again (they may have
 * moved), with more appended: the parser keeps offsets into them, not
 * pointers. After a message or gm_parser_reset the next call starts afresh.
 *
 * Binary arguments are split by the response type's argument count; missing
 * trailing arguments are empty, and one trailing NUL is dropped from a lone
 * handle argument (gearmand's WORK_FAIL, PROTOCOL.md 8.5). Unknown types come
 * back whole, as one argument; a length over GM_MAX_PACKET is refused from the
 * header alone, and a length behind a bad magic is never read.
 *
 * A text reply comes back as GM_CMD_TEXT with one argument that starts at the
 * message start; lines end in "\n", and a "\r" before it is kept inside the
 * message (LINE strips it from the argument). By mode:
 *   LINE    the first line, without its line ending;
 *   BLOCK   the bytes before the first line that is exactly "." (or ".\r"),
 *           which ends the message. Every earlier line is data, "ERR ..." too:
 *           block commands never answer with ERR (PROTOCOL.md 7), and a
 *           unique key "ERR x" is a line of "show unique jobs";
 *   MARKED  for "show unique jobs" followed by an ECHO_REQ, where a unique "."
 *           makes a "." line ambiguous: every byte before the first line start
 *           that holds a NUL (the binary ECHO_RES behind the text), final "."
 *           line included; the NUL is not consumed. Incomplete until that NUL
 *           has arrived.
 * A text message over GM_MAX_PACKET bytes is GM_E_RESPONSE_TOO_LARGE, reported
 * as soon as more than GM_MAX_PACKET bytes are pending without its end. */
long gm_parse_next(gm_parser_t *p, const char *data, size_t len, int text_mode,
                   gm_packet_t *pkt, size_t *need);

/* Number of arguments a response type carries, 0 for unknown types. */
unsigned gm_parse_nargs(unsigned cmd);

#endif
