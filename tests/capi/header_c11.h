/* What header_c11.c (compiled as C11) checks, for the C++ test to call. Each returns NULL, or
 * what went wrong. */
#ifndef FLICK_TEST_HEADER_C11_H
#define FLICK_TEST_HEADER_C11_H
#ifdef __cplusplus
extern "C" {
#endif
const char* c11_options_match_init(void);
const char* c11_machine_states_named(void);
#ifdef __cplusplus
}
#endif
#endif
