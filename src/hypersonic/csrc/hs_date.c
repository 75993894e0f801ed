/*
 * hs_date.c - IMF-fixdate formatting without locale or allocation (strftime
 * depends on LC_TIME; the HTTP date must always be English and GMT).
 */
#include <time.h>

#include "hs_date.h"

static const char hs_date_days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char hs_date_months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static void hs_date_2digits(char *out, int v)
{
    out[0] = (char)('0' + (v / 10) % 10);
    out[1] = (char)('0' + v % 10);
}

HS_API void hs_date_format(time_t t, char *out)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm)) { /* only for years out of range: keep a valid-looking date */
        t = 0;
        (void)gmtime_r(&t, &tm);
    }
    int year = tm.tm_year + 1900;
    const char *day = hs_date_days[tm.tm_wday % 7];
    const char *mon = hs_date_months[tm.tm_mon % 12];
    out[0] = day[0];
    out[1] = day[1];
    out[2] = day[2];
    out[3] = ',';
    out[4] = ' ';
    hs_date_2digits(out + 5, tm.tm_mday);
    out[7] = ' ';
    out[8] = mon[0];
    out[9] = mon[1];
    out[10] = mon[2];
    out[11] = ' ';
    hs_date_2digits(out + 12, year / 100);
    hs_date_2digits(out + 14, year % 100);
    out[16] = ' ';
    hs_date_2digits(out + 17, tm.tm_hour);
    out[19] = ':';
    hs_date_2digits(out + 20, tm.tm_min);
    out[22] = ':';
    hs_date_2digits(out + 23, tm.tm_sec);
    out[25] = ' ';
    out[26] = 'G';
    out[27] = 'M';
    out[28] = 'T';
}
