#define _POSIX_C_SOURCE 200809L

#include "progress.h"

#include <string.h>
#include <unistd.h>

#include "log.h"

#define PROGRESS_BAR_WIDTH 24
#define PROGRESS_TTY_INTERVAL 0.1

const char *lact_format_duration(double seconds, char *buf, size_t n) {
    if (!(seconds >= 0)) seconds = 0; /* also catches NaN */
    if (seconds < 60) {
        snprintf(buf, n, "%.1fs", seconds);
    } else if (seconds < 3600) {
        long s = (long)(seconds + 0.5);
        snprintf(buf, n, "%ldm%02lds", s / 60, s % 60);
    } else {
        long m = (long)(seconds / 60 + 0.5);
        snprintf(buf, n, "%ldh%02ldm", m / 60, m % 60);
    }
    return buf;
}

void lact_progress_init(lact_progress *p, FILE *out, const char *label, const char *unit,
                        int64_t total) {
    memset(p, 0, sizeof *p);
    p->out = out ? out : stderr;
    p->label = label ? label : "";
    p->unit = unit ? unit : "it";
    p->total = total > 0 ? total : 0;
    p->start = lact_now();
    p->last_draw = p->start;
    p->plain_every = 10.0;
    int fd = fileno(p->out);
    p->tty = fd >= 0 && isatty(fd);
}

/* Formats the current state (without line ending) into buf. */
static void progress_format(const lact_progress *p, double now, char *buf, size_t n) {
    double elapsed = now - p->start;
    double rate = elapsed > 0 ? (double)p->done / elapsed : 0;
    char eta[32] = "", spent[32];
    size_t len = (size_t)snprintf(buf, n, "%s ", p->label);
    if (p->total > 0) {
        double frac = (double)p->done / (double)p->total;
        if (frac > 1) frac = 1;
        if (frac < 0) frac = 0;
        if (p->tty && len < n) {
            int filled = (int)(frac * PROGRESS_BAR_WIDTH + 0.5);
            char bar[PROGRESS_BAR_WIDTH + 1];
            for (int i = 0; i < PROGRESS_BAR_WIDTH; i++)
                bar[i] = i < filled ? '#' : '.';
            bar[PROGRESS_BAR_WIDTH] = '\0';
            len += (size_t)snprintf(buf + len, n - len, "[%s] ", bar);
        }
        if (len < n)
            len += (size_t)snprintf(buf + len, n - len, "%lld/%lld (%3.0f%%)", (long long)p->done,
                                    (long long)p->total, 100 * frac);
        if (rate > 0 && p->done < p->total)
            lact_format_duration((double)(p->total - p->done) / rate, eta, sizeof eta);
    } else if (len < n) {
        len += (size_t)snprintf(buf + len, n - len, "%lld", (long long)p->done);
    }
    lact_format_duration(elapsed, spent, sizeof spent);
    if (len < n) len += (size_t)snprintf(buf + len, n - len, " %.1f %s/s %s", rate, p->unit, spent);
    if (eta[0] && len < n) len += (size_t)snprintf(buf + len, n - len, " eta %s", eta);
    if (p->extra[0] && len < n) snprintf(buf + len, n - len, " %s", p->extra);
}

static void progress_draw(lact_progress *p, double now, bool final) {
    char line[256];
    progress_format(p, now, line, sizeof line);
    if (p->tty) /* \033[K clears what a longer previous line left behind. */
        fprintf(p->out, "\r%s\033[K%s", line, final ? "\n" : "");
    else
        fprintf(p->out, "%s%s\n", line, final ? " done" : "");
    fflush(p->out);
    p->last_draw = now;
}

void lact_progress_update(lact_progress *p, int64_t done, const char *extra) {
    p->done = done;
    if (extra) {
        strncpy(p->extra, extra, sizeof p->extra - 1);
        p->extra[sizeof p->extra - 1] = '\0';
    }
    double now = lact_now();
    double every = p->tty ? PROGRESS_TTY_INTERVAL : p->plain_every;
    if (now - p->last_draw >= every) progress_draw(p, now, false);
}

void lact_progress_finish(lact_progress *p) {
    progress_draw(p, lact_now(), true);
}
