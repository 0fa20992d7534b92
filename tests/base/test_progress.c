#include <stdlib.h>
#include <string.h>

#include "core/base/progress.h"
#include "tests/support/check.h"

int main(void) {
    char buf[32];
    CHECK(strcmp(lact_format_duration(12.34, buf, sizeof buf), "12.3s") == 0);
    CHECK(strcmp(lact_format_duration(185, buf, sizeof buf), "3m05s") == 0);
    CHECK(strcmp(lact_format_duration(3720, buf, sizeof buf), "1h02m") == 0);
    CHECK(strcmp(lact_format_duration(-1, buf, sizeof buf), "0.0s") == 0);

    FILE *fp = tmpfile();
    CHECK(fp != NULL);
    if (!fp) return check_summary("base_progress");
    lact_progress p;
    lact_progress_init(&p, fp, "train", "step", 10);
    CHECK(!p.tty);
    p.plain_every = 0; /* print on every update */
    for (int i = 1; i <= 10; i++)
        lact_progress_update(&p, i, i == 4 ? "loss 3.21" : NULL);
    lact_progress_finish(&p);

    lact_progress q;
    lact_progress_init(&q, fp, "scan", "tok", 0);
    lact_progress_update(&q, 5, NULL); /* within plain_every: prints nothing */
    lact_progress_finish(&q);

    long size = ftell(fp);
    char *text = calloc(1, (size_t)size + 1);
    rewind(fp);
    CHECK(text && fread(text, 1, (size_t)size, fp) == (size_t)size);
    fclose(fp);
    if (!text) return check_summary("base_progress");
    int lines = 0;
    for (char *c = text; *c; c++)
        lines += *c == '\n';
    CHECK_MSG(lines == 12, "expected 12 lines, got %d:\n%s", lines, text);
    CHECK(strstr(text, "train 3/10") != NULL);
    CHECK(strstr(text, "train 10/10 (100%)") != NULL);
    CHECK(strstr(text, "step/s") != NULL);
    CHECK(strstr(text, "loss 3.21") != NULL); /* extra is kept until replaced */
    CHECK(strstr(text, " done\n") != NULL);
    CHECK(strstr(text, "scan 5 ") != NULL && strstr(text, "tok/s") != NULL);
    CHECK(strchr(text, '\r') == NULL); /* plain lines when not a terminal */
    free(text);
    return check_summary("base_progress");
}
