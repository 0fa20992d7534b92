/* A progress bar with rate and ETA. On a terminal it redraws one line at most
 * ten times a second; otherwise it prints a plain line every `plain_every`
 * seconds (default 10) so that logs stay readable. */
#ifndef LACT_PROGRESS_H
#define LACT_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lact_progress {
    FILE *out;
    const char *label; /* "train" */
    const char *unit;  /* "step", "tok" */
    int64_t total;     /* 0 = unknown */
    int64_t done;
    double start, last_draw;
    double plain_every;
    bool tty;
    char extra[96]; /* e.g. "loss 3.21" */
} lact_progress;

void lact_progress_init(lact_progress *p, FILE *out, const char *label, const char *unit,
                        int64_t total);
/* Sets done; extra (may be NULL) is shown after the rate. */
void lact_progress_update(lact_progress *p, int64_t done, const char *extra);
/* Draws the final state and ends the line. */
void lact_progress_finish(lact_progress *p);
/* Formats seconds as "1h02m", "3m05s", "12.3s" into buf. */
const char *lact_format_duration(double seconds, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
