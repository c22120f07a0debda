#define _POSIX_C_SOURCE 200809L
#include "shardflow/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void sf_json_init(sf_json *j, bool pretty)
{
    memset(j, 0, sizeof *j);
    sf_buf_init(&j->out);
    j->pretty = pretty;
    j->first[0] = true;
}

void sf_json_init_value_at(sf_json *j, bool pretty, int depth)
{
    sf_json_init(j, pretty);
    j->depth = depth > 0 && depth < SF_JSON_MAX_DEPTH - 1 ? depth : 0;
    j->after_key = j->depth > 0;
}

void sf_json_fini(sf_json *j) { sf_buf_fini(&j->out); }

static void put(sf_json *j, const char *s, size_t n)
{
    if (j->rc == SF_OK) j->rc = sf_buf_append(&j->out, s, n);
}

static void newline(sf_json *j)
{
    if (!j->pretty) return;
    put(j, "\n", 1);
    for (int i = 0; i < j->depth; i++) put(j, "  ", 2);
}

/* Separator before a value or key at the current level. */
static void before_value(sf_json *j)
{
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (j->depth > 0) {
        if (!j->first[j->depth]) put(j, ",", 1);
        newline(j);
    }
    j->first[j->depth] = false;
}

static void open_(sf_json *j, char c)
{
    before_value(j);
    put(j, &c, 1);
    if (j->depth + 1 >= SF_JSON_MAX_DEPTH) {
        /* The document is already failed (sticky rc); keep depth consistent. */
        if (j->rc == SF_OK) j->rc = sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "JSON nesting too deep");
        j->depth++;
        if (j->depth >= SF_JSON_MAX_DEPTH) j->depth = SF_JSON_MAX_DEPTH - 1;
        return;
    }
    j->depth++;
    j->first[j->depth] = true;
}

static void close_(sf_json *j, char c)
{
    if (j->depth <= 0) {
        if (j->rc == SF_OK) j->rc = sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "unbalanced JSON close");
        return;
    }
    bool empty = j->first[j->depth];
    j->depth--;
    if (!empty) newline(j);
    put(j, &c, 1);
}

void sf_json_obj_begin(sf_json *j) { open_(j, '{'); }
void sf_json_obj_end(sf_json *j) { close_(j, '}'); }
void sf_json_arr_begin(sf_json *j) { open_(j, '['); }
void sf_json_arr_end(sf_json *j) { close_(j, ']'); }

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if invalid. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

/* Writes a JSON string; bytes that are not valid UTF-8 become U+FFFD, so
 * the output is always valid JSON (and still deterministic). */
static void escaped(sf_json *j, const char *s, size_t n)
{
    put(j, "\"", 1);
    const unsigned char *u = (const unsigned char *)s;
    size_t start = 0, i = 0;
    while (i < n) {
        unsigned char c = u[i];
        if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t len = utf8_len(u + i, n - i);
            if (len > 0) {
                i += len;
                continue;
            }
        }
        put(j, s + start, i - start);
        char tmp[8];
        switch (c) {
        case '"': put(j, "\\\"", 2); break;
        case '\\': put(j, "\\\\", 2); break;
        case '\n': put(j, "\\n", 2); break;
        case '\r': put(j, "\\r", 2); break;
        case '\t': put(j, "\\t", 2); break;
        default:
            if (c >= 0x80) {
                put(j, "\\ufffd", 6);
            } else {
                snprintf(tmp, sizeof tmp, "\\u%04x", c);
                put(j, tmp, 6);
            }
        }
        i++;
        start = i;
    }
    put(j, s + start, n - start);
    put(j, "\"", 1);
}

void sf_json_keyn(sf_json *j, const char *k, size_t n)
{
    before_value(j);
    escaped(j, k, n);
    put(j, j->pretty ? ": " : ":", j->pretty ? 2 : 1);
    j->after_key = true;
}

void sf_json_key(sf_json *j, const char *k) { sf_json_keyn(j, k, strlen(k)); }

void sf_json_strn(sf_json *j, const char *s, size_t n)
{
    before_value(j);
    escaped(j, s, n);
}

void sf_json_str(sf_json *j, const char *s)
{
    if (s == NULL) {
        sf_json_null(j);
        return;
    }
    sf_json_strn(j, s, strlen(s));
}

void sf_json_int(sf_json *j, int64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRId64, v);
    before_value(j);
    put(j, tmp, (size_t)n);
}

void sf_json_uint(sf_json *j, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    before_value(j);
    put(j, tmp, (size_t)n);
}

void sf_json_num(sf_json *j, double v)
{
    if (!isfinite(v)) {
        sf_json_null(j);
        return;
    }
    char tmp[40];
    int n = snprintf(tmp, sizeof tmp, "%.17g", v);
    before_value(j);
    put(j, tmp, (size_t)n);
}

void sf_json_bool(sf_json *j, bool v)
{
    before_value(j);
    put(j, v ? "true" : "false", v ? 4 : 5);
}

void sf_json_null(sf_json *j)
{
    before_value(j);
    put(j, "null", 4);
}

void sf_json_raw(sf_json *j, const char *s, size_t n)
{
    before_value(j);
    put(j, s, n);
}

sf_status sf_json_write_file(sf_json *j, const char *path)
{
    SF_CALL(j->rc);
    char tmp[4096];
    int n = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    SF_CHECK(n > 0 && (size_t)n < sizeof tmp, SF_ERR_ARG, "path too long: %s", path);
    FILE *f = fopen(tmp, "wb");
    SF_CHECK(f != NULL, SF_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    size_t w = fwrite(j->out.data, 1, j->out.len, f);
    int e1 = (w != j->out.len) ? errno : 0;
    if (fputc('\n', f) == EOF && !e1) e1 = errno;
    if (fflush(f) != 0 && !e1) e1 = errno;
    if (fsync(fileno(f)) != 0 && !e1 && errno != EINVAL) e1 = errno;
    if (fclose(f) != 0 && !e1) e1 = errno;
    if (e1) {
        remove(tmp);
        return sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: write failed: %s", path, strerror(e1));
    }
    if (rename(tmp, path) != 0) {
        int e = errno;
        remove(tmp);
        return sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: cannot rename into place: %s", path,
                            strerror(e));
    }
    return SF_OK;
}

/* JSON's number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
bool sf_json_is_number(const char *s)
{
    const char *p = s;
    if (*p == '-') p++;
    if (*p == '0') p++;
    else if (*p >= '1' && *p <= '9') while (*p >= '0' && *p <= '9') p++;
    else return false;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9') return false;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '+' || *p == '-') p++;
        if (*p < '0' || *p > '9') return false;
        while (*p >= '0' && *p <= '9') p++;
    }
    return *p == '\0';
}
