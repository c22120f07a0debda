/* YAML to sf_cfg_node trees.
 *
 * The event API of libyaml is used rather than yaml_parser_load(): it gives the
 * position of every node directly and lets us refuse anchors and aliases at
 * the place they appear (a loaded document would already have shared the
 * aliased node, which a tree that is edited by --set and freed node by node
 * cannot allow). */
#define _POSIX_C_SOURCE 200809L
#include "flow/yaml_tree.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

/* Deeper nesting than this is certainly not a workflow. */
#define SF__YAML_MAX_DEPTH 256

static int mark_int(size_t v)
{
    return v >= (size_t)INT_MAX ? INT_MAX : (int)v + 1;
}

/* Grows an array of n elements when n is 0 or a power of two, so the capacity
 * never needs to be stored: it is always the next power of two. */
static bool grow(void **p, size_t n, size_t elem)
{
    if (n != 0 && (n & (n - 1)) != 0) return true;
    size_t cap = n == 0 ? 1 : 2 * n;
    void *q = realloc(*p, cap * elem);
    if (q == NULL) return false;
    *p = q;
    return true;
}

sf_cfg_node *sf__cfg_scalar_new(const char *s, size_t n, bool quoted, int line, int col)
{
    sf_cfg_node *node = calloc(1, sizeof *node);
    if (node == NULL) return NULL;
    node->scalar = malloc(n + 1);
    if (node->scalar == NULL) {
        free(node);
        return NULL;
    }
    if (n > 0) memcpy(node->scalar, s, n);
    node->scalar[n] = '\0';
    node->kind = SF_NODE_SCALAR;
    node->quoted = quoted;
    node->line = line;
    node->col = col;
    return node;
}

sf_cfg_node *sf__cfg_container_new(sf_node_kind kind, int line, int col)
{
    sf_cfg_node *node = calloc(1, sizeof *node);
    if (node == NULL) return NULL;
    node->kind = kind;
    node->line = line;
    node->col = col;
    return node;
}

sf_status sf__cfg_map_append(sf_cfg_node *map, const char *key, int key_line, sf_cfg_node *value)
{
    size_t n = map->n;
    SF_CHECK(grow((void **)&map->keys, n, sizeof *map->keys), SF_ERR_NOMEM, "out of memory (workflow)");
    SF_CHECK(grow((void **)&map->key_lines, n, sizeof *map->key_lines), SF_ERR_NOMEM,
             "out of memory (workflow)");
    SF_CHECK(grow((void **)&map->items, n, sizeof *map->items), SF_ERR_NOMEM, "out of memory (workflow)");
    size_t len = strlen(key);
    char *k = malloc(len + 1);
    SF_CHECK(k != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    memcpy(k, key, len + 1);
    map->keys[n] = k;
    map->key_lines[n] = key_line;
    map->items[n] = value;
    map->n = n + 1;
    return SF_OK;
}

sf_status sf__cfg_seq_append(sf_cfg_node *seq, sf_cfg_node *item)
{
    SF_CHECK(grow((void **)&seq->items, seq->n, sizeof *seq->items), SF_ERR_NOMEM,
             "out of memory (workflow)");
    seq->items[seq->n++] = item;
    return SF_OK;
}

void sf__cfg_node_free(sf_cfg_node *n)
{
    if (n == NULL) return;
    for (size_t i = 0; i < n->n; i++) {
        sf__cfg_node_free(n->items[i]);
        if (n->keys) free(n->keys[i]);
    }
    free(n->items);
    free(n->keys);
    free(n->key_lines);
    free(n->scalar);
    free(n);
}

void sf__cfg_set_position(sf_cfg_node *n, int line, int col)
{
    if (n == NULL) return;
    n->line = line;
    n->col = col;
    for (size_t i = 0; i < n->n; i++) {
        if (n->key_lines) n->key_lines[i] = line;
        sf__cfg_set_position(n->items[i], line, col);
    }
}

bool sf__cfg_is_null(const sf_cfg_node *n)
{
    if (n == NULL || n->kind != SF_NODE_SCALAR || n->quoted) return false;
    const char *s = n->scalar;
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

const char *sf__cfg_kind_name(const sf_cfg_node *n)
{
    if (n == NULL) return "nothing";
    switch (n->kind) {
    case SF_NODE_SCALAR: return sf__cfg_is_null(n) ? "an empty value" : "a scalar";
    case SF_NODE_MAP: return "a mapping";
    case SF_NODE_SEQ: return "a sequence";
    }
    return "an unknown node";
}

typedef struct frame {
    sf_cfg_node *node;
    char *key;     /* map frames: the key waiting for its value */
    int key_line;
} frame;

typedef struct parse_state {
    const char *name;
    frame *stack;
    size_t depth;
    sf_cfg_node *root;
} parse_state;

/* The dotted path of the innermost open node, for messages. */
static void stack_path(const parse_state *ps, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 1; i < ps->depth && len < cap; i++) {
        const sf_cfg_node *parent = ps->stack[i - 1].node;
        int w;
        if (parent->kind == SF_NODE_MAP)
            w = snprintf(buf + len, cap - len, "%s%s", len ? "." : "", parent->keys[parent->n - 1]);
        else
            w = snprintf(buf + len, cap - len, "[%zu]", parent->n - 1);
        if (w < 0) break;
        len += (size_t)w;
    }
}

/* Attaches a new node to the innermost open container (or makes it the
 * root). Takes ownership of node in every case. */
static sf_status attach(parse_state *ps, sf_cfg_node *node)
{
    sf_status rc = SF_OK;
    if (ps->depth == 0) {
        ps->root = node;
        return SF_OK;
    }
    frame *top = &ps->stack[ps->depth - 1];
    if (top->node->kind == SF_NODE_SEQ) {
        rc = sf__cfg_seq_append(top->node, node);
        if (rc != SF_OK) sf__cfg_node_free(node);
        return rc;
    }
    if (top->key == NULL) {
        char path[512];
        stack_path(ps, path, sizeof path);
        if (node->kind != SF_NODE_SCALAR) {
            rc = sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                              "%s:%d:%d: YAML error: %s%sa mapping key must be a plain string, found %s",
                              ps->name, node->line, node->col, path, path[0] ? ": " : "",
                              sf__cfg_kind_name(node));
            sf__cfg_node_free(node);
            return rc;
        }
        const sf_cfg_node *map = top->node;
        for (size_t i = 0; i < map->n; i++) {
            if (strcmp(map->keys[i], node->scalar) == 0) {
                rc = sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                                  "%s:%d: %s%s%s: duplicate key '%s' (first at line %d)", ps->name,
                                  node->line, path, path[0] ? "." : "", node->scalar, node->scalar,
                                  map->key_lines[i]);
                sf__cfg_node_free(node);
                return rc;
            }
        }
        top->key = node->scalar;
        top->key_line = node->line;
        node->scalar = NULL;
        sf__cfg_node_free(node);
        return SF_OK;
    }
    rc = sf__cfg_map_append(top->node, top->key, top->key_line, node);
    free(top->key);
    top->key = NULL;
    if (rc != SF_OK) sf__cfg_node_free(node);
    return rc;
}

static sf_status yaml_problem(const char *name, const yaml_parser_t *p)
{
    if (p->error == YAML_MEMORY_ERROR)
        return sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "%s: out of memory while parsing YAML", name);
    const char *problem = p->problem ? p->problem : "malformed document";
    int line = mark_int(p->problem_mark.line), col = mark_int(p->problem_mark.column);
    if (p->error == YAML_READER_ERROR)
        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "%s: YAML error: %s at byte %zu", name, problem,
                            p->problem_offset);
    if (p->context)
        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "%s:%d:%d: YAML error: %s (%s at line %d)", name,
                            line, col, problem, p->context, mark_int(p->context_mark.line));
    return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "%s:%d:%d: YAML error: %s", name, line, col, problem);
}

static sf_status no_anchor(const char *name, const yaml_event_t *ev, const yaml_char_t *anchor)
{
    SF_CHECK(anchor == NULL, SF_ERR_CONFIG,
             "%s:%d:%d: YAML error: anchors (&%s) and aliases are not supported in workflows; repeat "
             "the value instead",
             name, mark_int(ev->start_mark.line), mark_int(ev->start_mark.column), (const char *)anchor);
    return SF_OK;
}

sf_status sf__cfg_parse(const char *name, const char *text, size_t len, sf_cfg_node **out)
{
    *out = NULL;
    sf_status rc = SF_OK;
    yaml_parser_t parser;
    yaml_event_t ev;
    bool have_event = false, finished = false;
    int ndocs = 0;
    parse_state ps = {.name = name};

    SF_CHECK(yaml_parser_initialize(&parser), SF_ERR_NOMEM, "out of memory (YAML parser)");
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    ps.stack = malloc(SF__YAML_MAX_DEPTH * sizeof *ps.stack);
    SF_CHECK_GOTO(ps.stack != NULL, SF_ERR_NOMEM, done, "out of memory (YAML parser)");

    while (!finished) {
        if (!yaml_parser_parse(&parser, &ev)) {
            rc = yaml_problem(name, &parser);
            goto done;
        }
        have_event = true;
        int line = mark_int(ev.start_mark.line), col = mark_int(ev.start_mark.column);
        sf_cfg_node *node = NULL;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT: finished = true; break;
        case YAML_DOCUMENT_START_EVENT:
            ndocs++;
            SF_CHECK_GOTO(ndocs == 1, SF_ERR_CONFIG, done,
                          "%s:%d:%d: YAML error: a workflow file holds one YAML document, found a second one",
                          name, line, col);
            break;
        case YAML_ALIAS_EVENT:
            rc = sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                              "%s:%d:%d: YAML error: aliases (*%s) and anchors are not supported in "
                              "workflows; repeat the value instead",
                              name, line, col, (const char *)ev.data.alias.anchor);
            goto done;
        case YAML_SCALAR_EVENT:
            SF_CALL_GOTO(no_anchor(name, &ev, ev.data.scalar.anchor), done);
            SF_CHECK_GOTO(memchr(ev.data.scalar.value, '\0', ev.data.scalar.length) == NULL, SF_ERR_CONFIG, done,
                          "%s:%d:%d: YAML error: a value contains a NUL character", name, line, col);
            node = sf__cfg_scalar_new((const char *)ev.data.scalar.value, ev.data.scalar.length,
                                      ev.data.scalar.style != YAML_PLAIN_SCALAR_STYLE, line, col);
            SF_CHECK_GOTO(node != NULL, SF_ERR_NOMEM, done, "out of memory (workflow)");
            SF_CALL_GOTO(attach(&ps, node), done);
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT: {
            const yaml_char_t *anchor = ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
                                                                             : ev.data.mapping_start.anchor;
            SF_CALL_GOTO(no_anchor(name, &ev, anchor), done);
            SF_CHECK_GOTO(ps.depth < SF__YAML_MAX_DEPTH, SF_ERR_CONFIG, done,
                          "%s:%d:%d: YAML error: nesting deeper than %d levels", name, line, col,
                          SF__YAML_MAX_DEPTH);
            node = sf__cfg_container_new(ev.type == YAML_SEQUENCE_START_EVENT ? SF_NODE_SEQ : SF_NODE_MAP, line,
                                         col);
            SF_CHECK_GOTO(node != NULL, SF_ERR_NOMEM, done, "out of memory (workflow)");
            SF_CALL_GOTO(attach(&ps, node), done);
            ps.stack[ps.depth++] = (frame){.node = node};
            break;
        }
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT:
            /* libyaml guarantees balanced events; a map never ends between a
             * key and its value. */
            if (ps.depth > 0) {
                free(ps.stack[ps.depth - 1].key);
                ps.depth--;
            }
            break;
        default: break;
        }
        yaml_event_delete(&ev);
        have_event = false;
    }
    *out = ps.root;
    ps.root = NULL;

done:
    if (have_event) yaml_event_delete(&ev);
    if (ps.stack)
        for (size_t i = 0; i < ps.depth; i++) free(ps.stack[i].key);
    free(ps.stack);
    sf__cfg_node_free(ps.root);
    yaml_parser_delete(&parser);
    return rc;
}

sf_status sf__cfg_parse_file(const char *path, sf_cfg_node **out)
{
    *out = NULL;
    sf_status rc = SF_OK;
    char *text = NULL;
    size_t len = 0, cap = 0;
    FILE *f = fopen(path, "rb");
    SF_CHECK(f != NULL, SF_ERR_IO, "%s: cannot open workflow file: %s", path, strerror(errno));
    for (;;) {
        if (cap - len < 4096) {
            size_t ncap = cap ? 2 * cap : 16384;
            char *t = realloc(text, ncap);
            SF_CHECK_GOTO(t != NULL, SF_ERR_NOMEM, done, "%s: out of memory reading the workflow", path);
            text = t;
            cap = ncap;
        }
        size_t got = fread(text + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    SF_CHECK_GOTO(!ferror(f), SF_ERR_IO, done, "%s: cannot read workflow file: %s", path, strerror(errno));
    rc = sf__cfg_parse(path, text, len, out);

done:
    fclose(f);
    free(text);
    return rc;
}
