/* Row filters: the where: expressions of agents and the flag: expressions of
 * some agents.
 *
 * Grammar (case-sensitive keywords):
 *   expr    := or
 *   or      := and ("or" and)*
 *   and     := unary ("and" unary)*
 *   unary   := "not" unary | "(" expr ")" | compare
 *   compare := COLUMN OP literal | COLUMN "is" ["not"] "null"
 *   OP      := "==" | "!=" | "<" | "<=" | ">" | ">="
 *   literal := NUMBER | "double-quoted string" | 'single-quoted string'
 * A column name is [A-Za-z_][A-Za-z0-9_.]* (or any text in backquotes). A
 * string literal compared with a timestamp column is parsed as a timestamp.
 * Comparisons with a null value are false (so `x != 1` does not select
 * nulls); NaN compares as IEEE does. Strings compare byte-wise. */
#ifndef SF_FILTER_H
#define SF_FILTER_H

#include <stddef.h>
#include <stdint.h>

#include "shardflow/batch.h"
#include "shardflow/status.h"

typedef struct sf_filter sf_filter;

/* Parses expr. file/line locate it in messages ("FILE:LINE: where: ..."); key
 * names the option ("where", "flag"). Not collective. */
sf_status sf_filter_parse(const char *expr, const char *file, int line, const char *key,
                          sf_filter **out);
void sf_filter_destroy(sf_filter **f);
/* The columns the expression reads (names borrowed from the filter). */
int sf_filter_ncolumns(const sf_filter *f);
const char *sf_filter_column(const sf_filter *f, int i);
/* Resolves the columns against schema s (the pass schema) and checks that
 * every literal suits its column's type; messages as for parse. */
sf_status sf_filter_bind(sf_filter *f, const sf_schema *s);
/* Writes the rows of [begin, end) of b for which the expression holds into
 * sel (room for end - begin entries), ascending, and their number into *n.
 * f must be bound to b's schema. Thread-safe on one bound filter. */
sf_status sf_filter_eval(const sf_filter *f, const sf_batch *b, size_t begin, size_t end,
                         uint32_t *sel, size_t *n);
/* The equalities every selected row meets: the and-terms at the top of the
 * expression (none under "or" or "not") of the form COLUMN == literal with
 * a string literal or an integer (the integer as "%lld" prints it). At most
 * max are written into cols[i] (borrowed from the filter), vals[i] and
 * lens[i] (the literal's bytes, borrowed; not terminated); returns how many
 * there are. Works on a parsed filter, bound or not. Synthesis takes them
 * as part of a finding's subject (a where: service == "checkout" agent's
 * findings are about checkout). */
int sf_filter_equalities(const sf_filter *f, const char **cols, const char **vals, size_t *lens, int max);
/* The canonical text of the expression (fully parenthesised), for run.json
 * and to recognise equal filters. */
const char *sf_filter_text(const sf_filter *f);

#endif
