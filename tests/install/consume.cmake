# cmake -P script: install flick into a scratch prefix, then build tests/install/consume.c and
# consume.cpp with `pkg-config flick` against that prefix alone and run them from it.
file(REMOVE_RECURSE ${WORK})
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/ScriptRun.cmake)
function(expect text what)
  string(FIND "${last_output}" "${text}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "${what}: \"${text}\" not in:\n${last_output}")
  endif()
endfunction()

set(prefix ${WORK}/prefix)
set(libdir ${prefix}/${LIBDIR})
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
# Nothing lands outside the prefix (an absolute DESTINATION would).
file(STRINGS ${BUILD_DIR}/install_manifest.txt installed)
foreach(path ${installed})
  string(FIND "${path}" "${prefix}/" at)
  if(NOT at EQUAL 0)
    message(FATAL_ERROR "installed outside ${prefix}: ${path}")
  endif()
endforeach()

# Only the prefix: no build-tree headers, no system-wide flick.
set(ENV{PKG_CONFIG_PATH} ${libdir}/pkgconfig)
run(pkg-config --cflags --libs flick)
separate_arguments(flags UNIX_COMMAND "${last_output}")
# flick.pc finds its prefix relative to itself (${pcfiledir}/../..): resolve before comparing.
foreach(flag ${flags})
  if(flag MATCHES "^-([IL])(.*)")
    file(REAL_PATH "${CMAKE_MATCH_2}" dir)
    list(APPEND dirs "-${CMAKE_MATCH_1}${dir}")
  endif()
endforeach()
file(REAL_PATH ${prefix} real_prefix)
file(REAL_PATH ${libdir} real_libdir)
if(NOT dirs STREQUAL "-I${real_prefix}/include;-L${real_libdir}")
  message(FATAL_ERROR "pkg-config flick points elsewhere than ${prefix}: ${flags}")
endif()
run(pkg-config --modversion flick)
expect("${VERSION}" "pkg-config's version")

# The build's own compilers and flags (a sanitized library needs a sanitized program).
separate_arguments(cflags UNIX_COMMAND "${C_FLAGS}")
separate_arguments(cxxflags UNIX_COMMAND "${CXX_FLAGS}")
run(${C_COMPILER} -std=c11 -Wall -Wextra -Wpedantic -Werror ${cflags} ${SOURCE_DIR}/consume.c ${flags}
    -o ${WORK}/consume_c)
# The program records the soname (the major version) and binds flick_* to their version node.
run(readelf -d ${WORK}/consume_c)
expect("[libflick.so.${SOVERSION}]" "DT_NEEDED of the C program")
run(readelf --dyn-syms -W ${WORK}/consume_c)
expect("flick_version@FLICK_0.1" "the C program's binding of flick_version")
set(ENV{LD_LIBRARY_PATH} ${libdir})
run(${WORK}/consume_c)
expect(" from ${libdir}/libflick.so.${SOVERSION}" "the library the C program loaded")
message(STATUS "${last_output}")

run(${CXX_COMPILER} -std=c++20 -Wall -Wextra -Werror ${cxxflags} ${SOURCE_DIR}/consume.cpp ${flags}
    -o ${WORK}/consume_cpp)
run(${WORK}/consume_cpp)
message(STATUS "${last_output}")
