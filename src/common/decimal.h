/* The shortest decimal of a float: the text a user wrote for it ("0.7", not 0.699999988),
 * and the double that text stands for, which is what the official Python computes with. */
#ifndef TPSC_COMMON_DECIMAL_H
#define TPSC_COMMON_DECIMAL_H

#include <stddef.h>

/* buf (n >= 16 bytes) = the shortest "%.*g" (1 to 9 significant digits) that strtof reads
 * back as f exactly; 9 digits always do. */
void decimal_shortest(float f, char *buf, size_t n);
/* The double of decimal_shortest(f): 0.7f -> 0.7. */
double decimal_of_float(float f);

#endif
