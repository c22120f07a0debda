/* Voting rules that combine the per-record decisions of several anomaly
 * detectors into one decision (the vote agent uses them; so may any code
 * that has votes to combine). Pure functions: no state, no allocation,
 * thread-safe, not collective.
 *
 * Every detector gives a vote (1 = anomalous, 0 = not), a confidence in
 * that vote in [0, 1] and a weight >= 0. The rules (n detectors, y of them
 * voting yes):
 *   majority   yes iff y > n / 2 (strictly more than half).
 *   plurality  the side with more votes; a tie goes to the side with the
 *              larger summed confidence, and a tie of those to "no".
 *   weighted   yes iff the sum of weight * confidence over the yes votes is
 *              strictly larger than over the no votes (a tie is "no").
 *   quorum     yes iff y >= k.
 *   unanimity  yes iff every detector votes yes.
 * With n == 0 every rule decides "no".
 *
 * The confidence of a decision is the weighted mean confidence of the
 * detectors that voted for it, sum(w * c) / sum(w) over them, and 0 when
 * none did or their weights sum to 0. */
#ifndef SF_VOTE_H
#define SF_VOTE_H

#include <stdbool.h>
#include <stdint.h>

typedef enum sf_vote_rule {
    SF_VOTE_MAJORITY = 0,
    SF_VOTE_PLURALITY = 1,
    SF_VOTE_WEIGHTED = 2,
    SF_VOTE_QUORUM = 3,
    SF_VOTE_UNANIMITY = 4
} sf_vote_rule;

#define SF_VOTE_NRULES 5

/* Parses a rule name ("majority", "plurality", "weighted", "quorum",
 * "unanimity"); false (and *out unchanged) if name is none of them. Not
 * collective. */
bool sf_vote_rule_parse(const char *name, sf_vote_rule *out);

/* The name of a rule, as sf_vote_rule_parse accepts it; "?" for a value
 * outside the enum. Not collective. */
const char *sf_vote_rule_name(sf_vote_rule rule);

/* Combines n votes (0/1; any nonzero byte counts as 1), their confidences
 * and weights into a decision, returned, and its confidence, written to
 * *confidence when confidence != NULL. k is used by the quorum rule only.
 * conf == NULL means every confidence is 1; weight == NULL means every
 * weight is 1. The sums run in index order, so the result depends only on
 * the arguments. Not collective. */
bool sf_vote_combine(sf_vote_rule rule, int k, int n, const uint8_t *votes, const double *conf,
                     const double *weight, double *confidence);

#endif
