#include "src/common/decimal.h"

#include <stdio.h>
#include <stdlib.h>

void decimal_shortest(float f, char *buf, size_t n) {
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(buf, n, "%.*g", digits, (double)f);
        if (strtof(buf, NULL) == f) return;
    }
}

double decimal_of_float(float f) {
    char buf[32];
    decimal_shortest(f, buf, sizeof buf);
    return strtod(buf, NULL);
}
