/* Included right before a Debian stb header (with its *_IMPLEMENTATION defined): silences the
 * warnings our flags raise in stb's own code, and only there. Pair it with stb_quiet_end.h after
 * the header. Shared by every file that compiles an stb implementation (the data loader,
 * libtpsinfer's image path, the visualiser's PNG writer, the test fixtures). No include guard:
 * each use pushes once. */
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wmisleading-indentation"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#endif
