/*
 * gm_proto.h - Gearman wire constants, and nothing else.
 *
 * A binary packet (PROTOCOL.md 1.1):
 *
 *   offset 0   4 bytes   magic   "\0REQ" to the server, "\0RES" from it
 *   offset 4   4 bytes   type    uint32, big-endian (GM_CMD_*)
 *   offset 8   4 bytes   length  uint32, big-endian, size of the body only
 *   offset 12  length    body    arguments separated by single NULs; the last
 *                                one is not terminated and may hold any byte
 *
 * A text (admin) reply is anything whose first byte is not NUL: one line, or
 * for the block commands, lines up to a "." line (PROTOCOL.md 7).
 */
#ifndef GM_PROTO_H
#define GM_PROTO_H

#define GM_HEADER_SIZE 12
#define GM_MAGIC_REQ "\0REQ"
#define GM_MAGIC_RES "\0RES"

/* 256 MiB: the same per-packet cap as EV::Gearman; a client policy, checked
 * before anything is written or allocated (gearmand itself has none). */
#define GM_MAX_PACKET (256u * 1024u * 1024u)

/* Pseudo type of a text (admin) reply; type 0 is never valid on the wire. */
#define GM_CMD_TEXT 0
/* What a binary packet of type 0 is reported as: an unknown type. */
#define GM_CMD_INVALID 0xffffffffu

#define GM_CMD_CAN_DO 1
#define GM_CMD_CANT_DO 2
#define GM_CMD_RESET_ABILITIES 3
#define GM_CMD_PRE_SLEEP 4
#define GM_CMD_NOOP 6
#define GM_CMD_SUBMIT_JOB 7
#define GM_CMD_JOB_CREATED 8
#define GM_CMD_GRAB_JOB 9
#define GM_CMD_NO_JOB 10
#define GM_CMD_JOB_ASSIGN 11
#define GM_CMD_WORK_STATUS 12
#define GM_CMD_WORK_COMPLETE 13
#define GM_CMD_WORK_FAIL 14
#define GM_CMD_GET_STATUS 15
#define GM_CMD_ECHO_REQ 16
#define GM_CMD_ECHO_RES 17
#define GM_CMD_SUBMIT_JOB_BG 18
#define GM_CMD_ERROR 19
#define GM_CMD_STATUS_RES 20
#define GM_CMD_SUBMIT_JOB_HIGH 21
#define GM_CMD_SET_CLIENT_ID 22
#define GM_CMD_CAN_DO_TIMEOUT 23
#define GM_CMD_ALL_YOURS 24
#define GM_CMD_WORK_EXCEPTION 25
#define GM_CMD_OPTION_REQ 26
#define GM_CMD_OPTION_RES 27
#define GM_CMD_WORK_DATA 28
#define GM_CMD_WORK_WARNING 29
#define GM_CMD_GRAB_JOB_UNIQ 30
#define GM_CMD_JOB_ASSIGN_UNIQ 31
#define GM_CMD_SUBMIT_JOB_HIGH_BG 32
#define GM_CMD_SUBMIT_JOB_LOW 33
#define GM_CMD_SUBMIT_JOB_LOW_BG 34
#define GM_CMD_SUBMIT_JOB_SCHED 35
#define GM_CMD_SUBMIT_JOB_EPOCH 36
#define GM_CMD_SUBMIT_REDUCE_JOB 37
#define GM_CMD_SUBMIT_REDUCE_JOB_BACKGROUND 38
#define GM_CMD_GRAB_JOB_ALL 39
#define GM_CMD_JOB_ASSIGN_ALL 40
#define GM_CMD_GET_STATUS_UNIQUE 41
#define GM_CMD_STATUS_RES_UNIQUE 42
#define GM_CMD_MAX 42

/* Most arguments any packet carries (SUBMIT_JOB_SCHED: 8). */
#define GM_MAX_ARGS 8

/* Return codes: every gm_* function that can fail returns 0 (or a count) on
 * success and exactly one of these on failure; each value means one thing.
 * gearman_ev/_errors.py maps each to its err string. */
#define GM_OK 0
#define GM_E_NOMEM (-1)              /* malloc/realloc failed (a buffer could not grow) */
#define GM_E_TOO_LARGE (-2)          /* a request body would pass GM_MAX_PACKET: nothing queued */
#define GM_E_BAD_ARGS (-3)           /* type 0, too many args, NUL in a leading arg, or NULL with a length */
#define GM_E_BAD_MAGIC (-4)          /* a binary reply not starting "\0RES": "invalid response magic" */
#define GM_E_RESPONSE_TOO_LARGE (-5) /* a reply over GM_MAX_PACKET: "response packet too large" */
#define GM_E_UNEXPECTED_TEXT (-6)    /* text arrived while no admin reply was awaited */
#define GM_E_EOF (-7)                /* recv returned 0: "connection closed by server" */
#define GM_E_READ (-8)               /* recv failed: "read error: <strerror(err_no)>" */
#define GM_E_WRITE (-9)              /* send failed: "write error: <strerror(err_no)>" */
#define GM_E_BACKLOG (-10)           /* gm_conn_feed while a whole reply's worth sits undrained */

/* A big-endian 32-bit field of a packet header. */
static inline unsigned long gm_be32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return ((unsigned long)u[0] << 24) | ((unsigned long)u[1] << 16) |
           ((unsigned long)u[2] << 8) | (unsigned long)u[3];
}

#endif
