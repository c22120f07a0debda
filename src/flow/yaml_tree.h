/* Internal to flow/: YAML text to sf_cfg_node trees (libyaml event API), and
 * the small tree editing kit used by --set overrides. */
#ifndef SF_FLOW_YAML_TREE_H
#define SF_FLOW_YAML_TREE_H

#include <stdbool.h>
#include <stddef.h>

#include "shardflow/config.h"
#include "shardflow/status.h"

/* Parses one YAML document from text[0..len). name is what messages call the
 * text ("demo.yaml" gives "demo.yaml:3:7: YAML error: ..."). An empty
 * document gives *out == NULL and SF_OK. Anchors, aliases, complex keys,
 * duplicate keys and multi-document streams are rejected (SF_ERR_CONFIG). */
sf_status sf__cfg_parse(const char *name, const char *text, size_t len, sf_cfg_node **out /* out */);

/* Reads and parses a file; a file that cannot be read is SF_ERR_IO. */
sf_status sf__cfg_parse_file(const char *path, sf_cfg_node **out /* out */);

/* New nodes (NULL when out of memory). The scalar is copied. */
sf_cfg_node *sf__cfg_scalar_new(const char *s, size_t n, bool quoted, int line, int col);
sf_cfg_node *sf__cfg_container_new(sf_node_kind kind, int line, int col);

/* Appends key -> value to a map (key copied); takes ownership of value on
 * success only. */
sf_status sf__cfg_map_append(sf_cfg_node *map, const char *key, int key_line, sf_cfg_node *value);
/* Appends an item to a sequence; takes ownership on success only. */
sf_status sf__cfg_seq_append(sf_cfg_node *seq, sf_cfg_node *item);

/* Frees a node and everything below it (NULL is fine). */
void sf__cfg_node_free(sf_cfg_node *n);

/* Sets line and col of n and everything below it (and its key lines). */
void sf__cfg_set_position(sf_cfg_node *n, int line, int col);

/* A plain (unquoted) "", "~", "null", "Null" or "NULL" scalar. */
bool sf__cfg_is_null(const sf_cfg_node *n);

/* "scalar", "mapping" or "sequence" ("empty value" for a null scalar). */
const char *sf__cfg_kind_name(const sf_cfg_node *n);

#endif
