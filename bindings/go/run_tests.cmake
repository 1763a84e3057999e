# cmake -P script for the ctest go_bindings: install flick into a scratch prefix, then go vet
# (the examples too) and go test, offline, with the installed flick.pc and libflick, as a
# user's module would build against them. Go's caches live under WORK: HOME may be read-only
# where the tests run.
file(REMOVE_RECURSE ${WORK}/prefix)
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/ScriptRun.cmake)

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK}/prefix)
set(pc_dir ${WORK}/prefix/${LIBDIR}/pkgconfig)
if(NOT EXISTS ${pc_dir}/flick.pc)
  message(FATAL_ERROR "the install has no ${pc_dir}/flick.pc")
endif()

set(env
  PKG_CONFIG_PATH=${pc_dir}
  LD_LIBRARY_PATH=${WORK}/prefix/${LIBDIR}
  GOCACHE=${WORK}/gocache
  GOPATH=${WORK}/gopath
  GOENV=off
  GOPROXY=off
  GOFLAGS=-mod=mod
  GO111MODULE=on
  CGO_ENABLED=1
  ${TEST_ENV})
# Output goes straight to ctest's log.
foreach(step "vet;./..." "test;-count=1;./...")
  execute_process(COMMAND ${CMAKE_COMMAND} -E env ${env} ${GO} ${step}
                  WORKING_DIRECTORY ${SOURCE_DIR} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "go ${step} failed (${rc})")
  endif()
endforeach()
