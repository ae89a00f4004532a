/* The token-reduction methods: one table that the training framework, recipes, the checkpoint
 * and export formats, libtpsinfer and the cost model all read.
 *
 * Adding a method: add its ROW to TOK_METHOD_TABLE below (the enumerator TOK_<NAME>, the name
 * that recipes (tps.method), checkpoints and exported models spell, where it scores, what it
 * does with the tokens it does not keep), then its token counts in keep.h if they follow a new
 * rule, and its cost in macs.c. docs/common.md lists the steps. Names are stored in files:
 * never rename one; the enumerators' numbers are stored nowhere. */
#ifndef TPSC_COMMON_METHODS_H
#define TPSC_COMMON_METHODS_H

#include <stdbool.h>
#include <stddef.h>

/* Where a method's keep scores come from, and so where in the network it prunes. */
typedef enum method_scores {
    SCORES_NONE = 0,     /* nothing is scored (the dense model) */
    SCORES_PREDICTOR,    /* a PredictorLG before block prune_loc[s]; keeps floor(N keep_frac[s]) */
    SCORES_CLS_ATTENTION, /* the cls token's attention inside block prune_loc[s], after attention;
                            keeps ceil(rho_s n) of the current n */
    SCORES_KEY_MATCHING, /* ToMe: bipartite matching of the keys inside every block, after
                            attention; r per block (merge_rules.h) */
    SCORES_CLS_ATTENTION_BUDGET /* ATME: the cls token's attention inside block prune_loc[s],
                            after attention; keeps floor(N keep_frac[s]) of the N patches */
} method_scores;

/* What becomes of the tokens a stage does not keep. */
typedef enum method_dropped {
    DROPPED_DISCARD = 0, /* removed */
    DROPPED_SQUEEZE,     /* merged into their most similar kept hosts (TPS) */
    DROPPED_FUSE,        /* summed, weighted by cls attention, into one extra token (EViT) */
    DROPPED_MERGE        /* size-weighted average with the tokens they match; sizes drive
                            proportional attention later (ToMe, ATME; merge_rules.h) */
} method_dropped;

/* Whether a method prunes channels as well as tokens. */
typedef enum method_channels {
    CHANNELS_OPTIONAL = 0, /* CDCP gates ([cdcp]) may be added to any model */
    CHANNELS_REQUIRED      /* the method is defined with CDCP gates (cait): a recipe must set them */
} method_channels;

/*    enumerator      name          scores                       dropped          channels */
#define TOK_METHOD_TABLE(ROW)                                                                                    \
    ROW(TOK_NONE,       "none",       SCORES_NONE,                 DROPPED_DISCARD, CHANNELS_OPTIONAL) /* dense */  \
    ROW(TOK_DYNAMICVIT, "dynamicvit", SCORES_PREDICTOR,            DROPPED_DISCARD, CHANNELS_OPTIONAL) /* DynamicViT */ \
    ROW(TOK_DTPS,       "dtps",       SCORES_PREDICTOR,            DROPPED_SQUEEZE, CHANNELS_OPTIONAL) /* TPS on DynamicViT */ \
    ROW(TOK_EVIT,       "evit",       SCORES_CLS_ATTENTION,        DROPPED_FUSE,    CHANNELS_OPTIONAL) /* EViT */   \
    ROW(TOK_ETPS,       "etps",       SCORES_CLS_ATTENTION,        DROPPED_SQUEEZE, CHANNELS_OPTIONAL) /* TPS on EViT */ \
    ROW(TOK_TOME,       "tome",       SCORES_KEY_MATCHING,         DROPPED_MERGE,   CHANNELS_OPTIONAL) /* ToMe */   \
    ROW(TOK_ATME,       "atme",       SCORES_CLS_ATTENTION_BUDGET, DROPPED_MERGE,   CHANNELS_OPTIONAL) /* CAIT-style ATME */ \
    ROW(TOK_CAIT,       "cait",       SCORES_CLS_ATTENTION_BUDGET, DROPPED_MERGE,   CHANNELS_REQUIRED) /* CAIT-style: ATME + CDCP */

#define TOK_METHOD_ENUM_(e, name, scores, dropped, channels) e,
typedef enum tok_method { TOK_METHOD_TABLE(TOK_METHOD_ENUM_) TOK_METHOD_COUNT } tok_method;
#undef TOK_METHOD_ENUM_

/* "none|dynamicvit|dtps|evit|etps": the names in table order, for the recipe key's choices */
#define TOK_METHOD_CHOICE_(e, name, scores, dropped, channels) "|" name
#define TOK_METHOD_CHOICES (&("" TOK_METHOD_TABLE(TOK_METHOD_CHOICE_))[1])

typedef struct method_row {
    const char *name; /* lower case, as stored in files */
    method_scores scores;
    method_dropped dropped;
    method_channels channels;
} method_row;

/* The row of m, or NULL when m is not a method. */
const method_row *tok_method_row(tok_method m);
/* "dtps" (any case) -> TOK_DTPS; -1 for an unknown name or NULL. */
int tok_method_from_name(const char *name);
/* "unknown" for a value that is not a method */
const char *tok_method_name(tok_method m);
/* buf (n bytes) = the names separated by ", " ("none, dynamicvit, ..."), for error messages */
void tok_method_list(char *buf, size_t n);
bool tok_method_has_predictor(tok_method m); /* scores from a predictor: dynamicvit, dtps */
bool tok_method_squeezes(tok_method m);      /* dropped tokens squeezed: dtps, etps */
bool tok_method_merges(tok_method m);        /* dropped tokens merged by size: tome, atme, cait */
/* ATME's rule (scores SCORES_CLS_ATTENTION_BUDGET): neighbour merging on the grid at the
 * stages' blocks, with a source map: atme, cait */
bool tok_method_merges_on_grid(tok_method m);
bool tok_method_needs_channels(tok_method m); /* CHANNELS_REQUIRED: cait */

#endif
