# flick_warnings(target): the project's warning set; errors when FLICK_WERROR is on (CI presets).
add_library(flick_warnings INTERFACE)
target_compile_options(flick_warnings INTERFACE
  $<$<COMPILE_LANGUAGE:C,CXX>:-Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wcast-align
    -Wunused -Woverloaded-virtual -Wnull-dereference -Wdouble-promotion -Wformat=2
    -Wimplicit-fallthrough>
  $<$<AND:$<COMPILE_LANGUAGE:C,CXX>,$<BOOL:${FLICK_WERROR}>>:-Werror>)
