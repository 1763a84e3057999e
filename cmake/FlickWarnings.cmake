# flick_warnings(target): the project's warning set; errors when FLICK_WERROR is on (CI presets).
add_library(flick_warnings INTERFACE)
target_compile_options(flick_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:C,CXX>:-Wall -Wextra -Wshadow -Wcast-align -Wunused -Wnull-dereference
    -Wdouble-promotion -Wformat=2 -Wimplicit-fallthrough>
  $<$<COMPILE_LANGUAGE:CXX>:-Wnon-virtual-dtor -Woverloaded-virtual>
  $<$<AND:$<COMPILE_LANGUAGE:C,CXX>,$<BOOL:${FLICK_WERROR}>>:-Werror>)
