// Symbol visibility: flick builds with -fvisibility=hidden; only FLICK_API names are exported.
#pragma once

#if defined(FLICK_BUILDING_LIBRARY)
#define FLICK_API __attribute__((visibility("default")))
#else
#define FLICK_API
#endif
