/*
 * hs_date.h - the HTTP Date header value (RFC 9110 5.6.7 IMF-fixdate), formatted
 * once a second and copied into responses (and patched into baked ones).
 */
#ifndef HS_DATE_H
#define HS_DATE_H

#include <time.h>

#include "hs_common.h"

/* Length of an IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT". */
#define HS_DATE_LEN 29

/* Format t as an IMF-fixdate into out[0..HS_DATE_LEN) (no NUL written). */
HS_API void hs_date_format(time_t t, char *out);

#endif /* HS_DATE_H */
