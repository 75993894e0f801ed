/*
 * hs_accept.h - Accept-Encoding negotiation for gzip (RFC 9110 12.5.3): does
 * a parsed request accept a gzip-coded response?
 *
 * The rules are those of hypersonic._encoding.accepts_gzip, and the two are
 * tested against each other (tests/test_accept_differential.py):
 *  - the field may be repeated; its values combine as one comma-separated list;
 *  - each member is `coding *( OWS ";" OWS param )`; OWS is SP / HTAB;
 *    codings and parameter names compare ASCII case-insensitively;
 *  - "gzip" and "x-gzip" (RFC 9110 18.6) name gzip; the highest q among such
 *    members is gzip's; without one, the q of the last "*" member applies;
 *    with neither (or no Accept-Encoding field at all), gzip is not accepted;
 *  - q = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ); a member with a
 *    malformed q (or q > 1) is ignored; other parameters are ignored;
 *  - gzip is accepted when its q is above 0 ("gzip;q=0" refuses it).
 * Allocation-free; reads only the spans it is given.
 */
#ifndef HS_ACCEPT_H
#define HS_ACCEPT_H

#include <stddef.h>

#include "hs_common.h"
#include "hs_parser.h"

/* q-values are kept in thousandths: q=1 is HS_ACCEPT_Q_ONE. */
#define HS_ACCEPT_Q_ONE 1000
/* "not seen" / "malformed" marker for a q-value. */
#define HS_ACCEPT_Q_NONE (-1)

/* The state of one negotiation over one or more field values. */
typedef struct hs_accept_scan {
    int gzip_q; /* highest q of a "gzip"/"x-gzip" member, or HS_ACCEPT_Q_NONE */
    int star_q; /* q of the last "*" member, or HS_ACCEPT_Q_NONE */
} hs_accept_scan;

/* Start a negotiation: nothing seen yet. */
HS_API void hs_accept_begin(hs_accept_scan *scan);

/* Feed one Accept-Encoding field value value[0..len) (any bytes; no NUL needed). */
HS_API void hs_accept_feed(hs_accept_scan *scan, const char *value, size_t len);

/* 1 when the values fed so far accept gzip (q > 0, named or through "*"), else 0. */
HS_API int hs_accept_result(const hs_accept_scan *scan);

/*
 * The q of a member's parameter list params[0..len) (what follows its first
 * ';', without it): HS_ACCEPT_Q_ONE when no q parameter is present, the q in
 * thousandths, or HS_ACCEPT_Q_NONE when a q parameter is malformed or above 1.
 */
HS_API int hs_accept_qvalue(const char *params, size_t len);

/* 1 when the request's Accept-Encoding field(s) accept gzip, else 0 (also when absent). */
HS_API int hs_accept_gzip(const hs_request *r);

#endif /* HS_ACCEPT_H */
