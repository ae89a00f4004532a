#include "src/common/keep.h"

#include <math.h>
#include <stdbool.h>

#include "src/common/decimal.h"

void keep_fill_rho(float *keep_frac, int n_stages, float rho) {
    const double r = decimal_of_float(rho);
    for (int s = 0; s < n_stages; s++) keep_frac[s] = (float)pow(r, s + 1);
}

/* Whether keep_frac is what keep_fill_rho writes for rho = its first fraction's decimal. */
static bool compounded(const float *keep_frac, int n_stages, double rho) {
    for (int s = 0; s < n_stages; s++)
        if (keep_frac[s] != (float)pow(rho, s + 1)) return false;
    return true;
}

size_t keep_count_predictor(const float *keep_frac, int n_stages, int stage, size_t n_patches) {
    if (stage < 0 || stage >= n_stages) return n_patches;
    const double rho = decimal_of_float(keep_frac[0]);
    const double frac = compounded(keep_frac, n_stages, rho) ? pow(rho, stage + 1) : decimal_of_float(keep_frac[stage]);
    /* Python: int(init_n * ratio), a truncation of a positive double */
    size_t k = (size_t)floor((double)n_patches * frac);
    if (k < 1) k = 1;
    return k > n_patches ? n_patches : k;
}

size_t keep_count_evit(const float *keep_frac, int n_stages, int stage, size_t n) {
    if (stage < 0 || stage >= n_stages || n == 0) return n;
    const double rho = decimal_of_float(keep_frac[0]);
    double rate = rho;
    if (stage > 0 && !compounded(keep_frac, n_stages, rho))
        rate = decimal_of_float(keep_frac[stage]) / decimal_of_float(keep_frac[stage - 1]);
    /* Python: math.ceil(keep_rate * (N - 1)), N - 1 the current spatial tokens */
    size_t k = (size_t)ceil((double)n * rate);
    if (k < 1) k = 1;
    return k > n ? n : k;
}
