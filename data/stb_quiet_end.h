/* The end of what stb_quiet_begin.h started. */
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif
