# cmake -P script for the ctest python_bindings: install flick into a scratch prefix, install
# the package into a venv (README.md's command, from a copy so the source tree stays clean),
# run pytest against the installed library.
file(REMOVE_RECURSE ${WORK})
include(${CMAKE_CURRENT_LIST_DIR}/../../cmake/ScriptRun.cmake)

run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${WORK}/prefix)
set(library ${WORK}/prefix/${LIBDIR}/libflick.so.${SOVERSION})
if(NOT EXISTS ${library})
  message(FATAL_ERROR "the install has no ${library}")
endif()

file(COPY ${SOURCE_DIR}/ DESTINATION ${WORK}/src PATTERN __pycache__ EXCLUDE PATTERN tests EXCLUDE)
run(${PYTHON} -m venv --system-site-packages ${WORK}/venv)
run(${WORK}/venv/bin/pip install --no-index --no-build-isolation ${WORK}/src)

# Output goes straight to ctest's log; the tests import the installed package (the tests
# folder has no __init__.py, so pytest puts only it on sys.path).
execute_process(
  COMMAND ${CMAKE_COMMAND} -E env FLICK_LIBRARY=${library} FLICK_TEST_GUEST_KERNEL=${GUEST_KERNEL}
          FLICK_SOURCE_DIR=${FLICK_SOURCE_DIR} FLICK_EXPECT_INSTALLED=${WORK}/venv
          ${WORK}/venv/bin/python -m pytest -p no:cacheprovider -v ${SOURCE_DIR}/tests
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pytest failed (${rc})")
endif()
