/* Voting rules over detector decisions (see shardflow/vote.h). */
#include "shardflow/vote.h"

#include <stddef.h>
#include <string.h>

static const char *const rule_names[SF_VOTE_NRULES] = {
    "majority", "plurality", "weighted", "quorum", "unanimity",
};

bool sf_vote_rule_parse(const char *name, sf_vote_rule *out)
{
    if (name == NULL) return false;
    for (int i = 0; i < SF_VOTE_NRULES; i++)
        if (strcmp(name, rule_names[i]) == 0) {
            *out = (sf_vote_rule)i;
            return true;
        }
    return false;
}

const char *sf_vote_rule_name(sf_vote_rule rule)
{
    int i = (int)rule;
    return i >= 0 && i < SF_VOTE_NRULES ? rule_names[i] : "?";
}

bool sf_vote_combine(sf_vote_rule rule, int k, int n, const uint8_t *votes, const double *conf,
                     const double *weight, double *confidence)
{
    /* One pass in index order collects everything every rule needs, so the
     * floating-point sums are the same whichever rule is asked for. */
    int yes = 0;
    double conf_yes = 0, conf_no = 0;   /* summed confidence per side */
    double wc_yes = 0, wc_no = 0;       /* summed weight * confidence per side */
    double w_yes = 0, w_no = 0;         /* summed weight per side */
    for (int i = 0; i < n; i++) {
        double c = conf != NULL ? conf[i] : 1.0;
        double w = weight != NULL ? weight[i] : 1.0;
        if (votes[i] != 0) {
            yes++;
            conf_yes += c;
            wc_yes += w * c;
            w_yes += w;
        } else {
            conf_no += c;
            wc_no += w * c;
            w_no += w;
        }
    }
    int no = n - yes;
    bool decision = false;
    if (n > 0) {
        switch (rule) {
        case SF_VOTE_MAJORITY:
            decision = 2 * yes > n;
            break;
        case SF_VOTE_PLURALITY:
            decision = yes != no ? yes > no : conf_yes > conf_no;
            break;
        case SF_VOTE_WEIGHTED:
            decision = wc_yes > wc_no;
            break;
        case SF_VOTE_QUORUM:
            decision = yes >= k;
            break;
        case SF_VOTE_UNANIMITY:
            decision = yes == n;
            break;
        }
    }
    if (confidence != NULL) {
        double wc = decision ? wc_yes : wc_no;
        double w = decision ? w_yes : w_no;
        *confidence = w > 0 ? wc / w : 0.0;
    }
    return decision;
}
