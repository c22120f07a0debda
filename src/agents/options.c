/* Option helpers for agents (shardflow/agent.h): every message names the
 * workflow file, the option's line and the agent id, or the --set key for an
 * option that came from the command line (line 0). */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

/* Appends formatted text to list (size cap) at *len, never past its end. */
static void list_add(char *list, size_t cap, size_t *len, const char *sep, const char *item)
{
    if (*len >= cap - 1) return;
    int n = snprintf(list + *len, cap - *len, "%s%s", sep, item);
    if (n > 0) *len += (size_t)n < cap - *len ? (size_t)n : cap - 1 - *len;
}

static const char *const engine_keys[] = {"agent", "id", "column", "by", "where", "baseline"};

static const char *file_of(const sf_agent_config *cfg)
{
    return cfg->file ? cfg->file : "<workflow>";
}

static const char *id_of(const sf_agent_config *cfg)
{
    return cfg->id ? cfg->id : (cfg->agent ? cfg->agent : "?");
}

/* Index of key in the agent's mapping, -1 if absent. */
static int key_index(const sf_agent_config *cfg, const char *key)
{
    const sf_cfg_node *m = cfg->node;
    if (m == NULL || m->kind != SF_NODE_MAP) return -1;
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->keys[i], key) == 0) return (int)i;
    return -1;
}

/* "FILE:LINE: agent 'ID': option 'KEY'" or "--set ...: agent 'ID': option 'KEY'". */
static void where_of(const sf_agent_config *cfg, const char *key, char *buf, size_t n)
{
    int i = key_index(cfg, key);
    int line = cfg->line;
    const sf_cfg_node *v = NULL;
    if (i >= 0) {
        line = cfg->node->key_lines ? cfg->node->key_lines[i] : cfg->line;
        v = cfg->node->items[i];
        if (v && v->line > 0) line = v->line;
        else if (v) line = 0; /* the value came from --set */
    }
    if (i >= 0 && line <= 0)
        snprintf(buf, n, "--set %s: agent '%s': option '%s'", key, id_of(cfg), key);
    else
        snprintf(buf, n, "%s:%d: agent '%s': option '%s'", file_of(cfg), line, id_of(cfg), key);
}

#define OPT_FAIL(cfg, key, ...)                                                        \
    do {                                                                              \
        char where_[1024], what_[2048];                                                \
        where_of((cfg), (key), where_, sizeof where_);                                 \
        snprintf(what_, sizeof what_, __VA_ARGS__);                                    \
        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "%s: %s", where_, what_); \
    } while (0)

sf_status sf_agent_check_options(const sf_agent_config *cfg, const char *const *allowed, int n)
{
    const sf_cfg_node *m = cfg->node;
    if (m == NULL || m->kind != SF_NODE_MAP) return SF_OK;
    for (size_t i = 0; i < m->n; i++) {
        bool ok = false;
        for (size_t e = 0; e < sizeof engine_keys / sizeof engine_keys[0]; e++)
            if (strcmp(m->keys[i], engine_keys[e]) == 0) ok = true;
        for (int a = 0; a < n && !ok; a++)
            if (strcmp(m->keys[i], allowed[a]) == 0) ok = true;
        if (ok) continue;
        char list[1024] = "";
        size_t len = 0;
        for (size_t e = 0; e < sizeof engine_keys / sizeof engine_keys[0]; e++)
            list_add(list, sizeof list, &len, e ? ", " : "", engine_keys[e]);
        for (int a = 0; a < n; a++)
            list_add(list, sizeof list, &len, ", ", allowed[a]);
        int line = m->key_lines ? m->key_lines[i] : cfg->line;
        if (line <= 0)
            return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                                "--set %s: agent '%s': unknown option '%s' (%s accepts %s)", m->keys[i],
                                id_of(cfg), m->keys[i], cfg->agent ? cfg->agent : "the agent", list);
        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                            "%s:%d: agent '%s': unknown option '%s' (%s accepts %s)", file_of(cfg), line,
                            id_of(cfg), m->keys[i], cfg->agent ? cfg->agent : "the agent", list);
    }
    return SF_OK;
}

const sf_cfg_node *sf_agent_option(const sf_agent_config *cfg, const char *key)
{
    int i = key_index(cfg, key);
    return i < 0 ? NULL : cfg->node->items[i];
}

static bool is_null(const sf_cfg_node *v)
{
    return v == NULL || (v->kind == SF_NODE_SCALAR && !v->quoted &&
                         (v->scalar == NULL || v->scalar[0] == '\0' || strcmp(v->scalar, "~") == 0 ||
                          strcmp(v->scalar, "null") == 0));
}

static bool parse_double(const char *s, double *out)
{
    if (s == NULL || *s == '\0') return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end != '\0' || errno == ERANGE || !isfinite(v)) return false;
    *out = v;
    return true;
}

sf_status sf_agent_opt_double(const sf_agent_config *cfg, const char *key, double dflt, double lo,
                              double hi, double *out)
{
    const sf_cfg_node *v = sf_agent_option(cfg, key);
    if (is_null(v)) {
        *out = dflt;
        return SF_OK;
    }
    double x;
    if (v->kind != SF_NODE_SCALAR || !parse_double(v->scalar, &x))
        OPT_FAIL(cfg, key, "expected a number, found '%s'",
                 v->kind == SF_NODE_SCALAR ? v->scalar : v->kind == SF_NODE_MAP ? "a mapping" : "a list");
    if (x < lo || x > hi) OPT_FAIL(cfg, key, "%g is outside [%g, %g]", x, lo, hi);
    *out = x;
    return SF_OK;
}

sf_status sf_agent_opt_int(const sf_agent_config *cfg, const char *key, int64_t dflt, int64_t lo,
                           int64_t hi, int64_t *out)
{
    const sf_cfg_node *v = sf_agent_option(cfg, key);
    if (is_null(v)) {
        *out = dflt;
        return SF_OK;
    }
    if (v->kind != SF_NODE_SCALAR) OPT_FAIL(cfg, key, "expected an integer");
    const char *s = v->scalar;
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno == ERANGE) OPT_FAIL(cfg, key, "expected an integer, found '%s'", s);
    if (x < lo || x > hi)
        OPT_FAIL(cfg, key, "%lld is outside [%lld, %lld]", x, (long long)lo, (long long)hi);
    *out = (int64_t)x;
    return SF_OK;
}

sf_status sf_agent_opt_str(const sf_agent_config *cfg, const char *key, const char *dflt,
                           const char **out)
{
    const sf_cfg_node *v = sf_agent_option(cfg, key);
    if (v == NULL || (is_null(v) && v->kind == SF_NODE_SCALAR && !v->quoted)) {
        *out = dflt;
        return SF_OK;
    }
    if (v->kind != SF_NODE_SCALAR) OPT_FAIL(cfg, key, "expected a single value");
    *out = v->scalar;
    return SF_OK;
}

sf_status sf_agent_opt_choice(const sf_agent_config *cfg, const char *key,
                              const char *const *choices, int n, int dflt, int *out)
{
    const char *s;
    SF_CALL(sf_agent_opt_str(cfg, key, NULL, &s));
    if (s == NULL) {
        *out = dflt;
        return SF_OK;
    }
    for (int i = 0; i < n; i++)
        if (strcmp(s, choices[i]) == 0) {
            *out = i;
            return SF_OK;
        }
    char list[512] = "";
    size_t len = 0;
    for (int i = 0; i < n; i++)
        list_add(list, sizeof list, &len, i ? ", " : "", choices[i]);
    OPT_FAIL(cfg, key, "'%s' is not one of %s", s, list);
}

sf_status sf_agent_opt_bool(const sf_agent_config *cfg, const char *key, bool dflt, bool *out)
{
    const char *s;
    SF_CALL(sf_agent_opt_str(cfg, key, NULL, &s));
    if (s == NULL) {
        *out = dflt;
        return SF_OK;
    }
    if (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0) {
        *out = true;
        return SF_OK;
    }
    if (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0) {
        *out = false;
        return SF_OK;
    }
    OPT_FAIL(cfg, key, "expected true or false, found '%s'", s);
}

sf_status sf_agent_opt_doubles(const sf_agent_config *cfg, const char *key, double lo, double hi,
                               double *out, int max, int *n)
{
    const sf_cfg_node *v = sf_agent_option(cfg, key);
    *n = 0;
    if (is_null(v)) return SF_OK;
    size_t cnt = v->kind == SF_NODE_SEQ ? v->n : 1;
    if (v->kind == SF_NODE_MAP) OPT_FAIL(cfg, key, "expected a number or a list of numbers");
    if (cnt > (size_t)max) OPT_FAIL(cfg, key, "at most %d values, found %zu", max, cnt);
    for (size_t i = 0; i < cnt; i++) {
        const sf_cfg_node *e = v->kind == SF_NODE_SEQ ? v->items[i] : v;
        double x;
        if (e->kind != SF_NODE_SCALAR || !parse_double(e->scalar, &x))
            OPT_FAIL(cfg, key, "item %zu: expected a number", i);
        if (x < lo || x > hi) OPT_FAIL(cfg, key, "item %zu: %g is outside [%g, %g]", i, x, lo, hi);
        out[i] = x;
    }
    *n = (int)cnt;
    return SF_OK;
}

sf_status sf_agent_opt_strs(const sf_agent_config *cfg, const char *key, const char **out, int max,
                            int *n)
{
    const sf_cfg_node *v = sf_agent_option(cfg, key);
    *n = 0;
    if (is_null(v)) return SF_OK;
    if (v->kind == SF_NODE_MAP) OPT_FAIL(cfg, key, "expected a name or a list of names");
    size_t cnt = v->kind == SF_NODE_SEQ ? v->n : 1;
    if (cnt > (size_t)max) OPT_FAIL(cfg, key, "at most %d values, found %zu", max, cnt);
    for (size_t i = 0; i < cnt; i++) {
        const sf_cfg_node *e = v->kind == SF_NODE_SEQ ? v->items[i] : v;
        if (e->kind != SF_NODE_SCALAR || e->scalar == NULL || e->scalar[0] == '\0')
            OPT_FAIL(cfg, key, "item %zu: expected a name", i);
        out[i] = e->scalar;
    }
    *n = (int)cnt;
    return SF_OK;
}

sf_status sf_agent_opt_duration_us(const sf_agent_config *cfg, const char *key, int64_t dflt,
                                   int64_t *out)
{
    const char *s;
    SF_CALL(sf_agent_opt_str(cfg, key, NULL, &s));
    if (s == NULL) {
        *out = dflt;
        return SF_OK;
    }
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    double mult = 1e6;
    if (end == s || errno == ERANGE || !isfinite(x)) OPT_FAIL(cfg, key, "expected a duration such as 30s or 1m, found '%s'", s);
    while (*end == ' ') end++;
    if (*end == '\0' || strcmp(end, "s") == 0) mult = 1e6;
    else if (strcmp(end, "ms") == 0) mult = 1e3;
    else if (strcmp(end, "us") == 0) mult = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0) mult = 60e6;
    else if (strcmp(end, "h") == 0) mult = 3600e6;
    else if (strcmp(end, "d") == 0) mult = 86400e6;
    else OPT_FAIL(cfg, key, "unknown unit '%s' in '%s' (use us, ms, s, m, h or d)", end, s);
    double us = x * mult;
    if (!(us >= 1) || us > 9.2e18) OPT_FAIL(cfg, key, "'%s' must be at least 1us and finite", s);
    /* A decimal such as 1.039 is not exact in binary: accept a product
     * within rounding error of a whole number of microseconds. */
    double whole = round(us);
    if (fabs(us - whole) > 1e-9 * fmax(1.0, whole))
        OPT_FAIL(cfg, key, "'%s' is not a whole number of microseconds", s);
    us = whole;
    *out = (int64_t)us;
    return SF_OK;
}

int sf_agent_col(const sf_agent_config *cfg, const char *name)
{
    if (cfg->schema == NULL || name == NULL) return -1;
    return sf_schema_find(cfg->schema, name);
}

sf_status sf_agent_need_col(const sf_agent_config *cfg, const char *key, const char *name,
                            const sf_type *types, int ntypes, int *col)
{
    SF_CHECK(name != NULL, SF_ERR_CONFIG, "%s:%d: agent '%s': %s: a column name is required",
             file_of(cfg), cfg->line, id_of(cfg), key);
    int c = sf_agent_col(cfg, name);
    if (c < 0) {
        char cols[1024] = "";
        if (cfg->schema) sf_schema_format_columns(cfg->schema, cols, sizeof cols);
        OPT_FAIL(cfg, key, "no column '%s' (columns: %s)", name, cols);
    }
    sf_type t = cfg->schema->fields[c].type;
    bool ok = ntypes == 0;
    for (int i = 0; i < ntypes; i++)
        if (types[i] == t) ok = true;
    if (!ok) {
        char list[256] = "";
        size_t len = 0;
        for (int i = 0; i < ntypes; i++)
            list_add(list, sizeof list, &len, i ? (i + 1 == ntypes ? " or " : ", ") : "", sf_type_name(types[i]));
        OPT_FAIL(cfg, key, "column '%s' is %s, expected %s", name, sf_type_name(t), list);
    }
    *col = c;
    return SF_OK;
}
